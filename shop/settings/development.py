"""Development: ``make run``, the benchmarks, and the tests through ``shop.settings.test``.

The shared settings with development's defaults (``shop.settings.environment``): the local
emulator that ``make run`` starts, a development secret key, plain logs, DEBUG on. A variable
set in the environment still wins.
"""

from shop.settings.environment import use_development_defaults

use_development_defaults()

from shop.settings.base import *  # noqa: E402, F403
