import os

from django.core.wsgi import get_wsgi_application

from shop.web.edge import ContentTypeGuard

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shop.settings.production")

# Content-Types Django cannot build a request from, or charsets other than UTF-8: a 415
# before Django (shop/web/edge.py).
application = ContentTypeGuard(get_wsgi_application())
