"""The operator's `ses_verify` command, and a newly verified address working at once."""

from __future__ import annotations

import io
import uuid

import pytest
from django.core.management import CommandError, call_command

from notifications import ses


def test_a_verified_address_is_usable_on_the_next_attempt():
    address = f"verify-{uuid.uuid4().hex[:8]}@example.org"
    ses.cache_clear()
    assert ses.recipient_verified(address=address) is False  # "not verified" is not cached

    out = io.StringIO()
    call_command("ses_verify", address, stdout=out)

    assert f"verification of {address} requested" in out.getvalue()
    assert ses.recipient_verified(address=address) is True


@pytest.mark.parametrize("junk", ["not-an-address", "a@b@c", ""])
def test_junk_is_refused_cleanly(junk):
    with pytest.raises(CommandError, match="not an email address"):
        call_command("ses_verify", junk)
