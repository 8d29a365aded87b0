"""PostgreSQL only: every insert into the outbox NOTIFYs ``shop_outbox`` when its transaction
commits, so a relay waiting in LISTEN wakes at once (``shop.outbox``). PostgreSQL folds the
identical notifications of one transaction into one: one wake-up per commit. SQLite has no
LISTEN/NOTIFY: the relay polls there (``OUTBOX_POLL_SECONDS``)."""

from django.db import migrations

CHANNEL = "shop_outbox"

CREATE = f"""
CREATE OR REPLACE FUNCTION shop_outbox_notify() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('{CHANNEL}', '');
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER shop_outbox_notify AFTER INSERT ON shop_outboxmessage
    FOR EACH STATEMENT EXECUTE FUNCTION shop_outbox_notify();
"""
DROP = """
DROP TRIGGER IF EXISTS shop_outbox_notify ON shop_outboxmessage;
DROP FUNCTION IF EXISTS shop_outbox_notify();
"""


def _on_postgresql(sql):
    def run(apps, schema_editor):
        if schema_editor.connection.vendor == "postgresql":
            schema_editor.execute(sql)

    return run


class Migration(migrations.Migration):
    dependencies = [("shop", "0001_outbox")]

    operations = [migrations.RunPython(_on_postgresql(CREATE), _on_postgresql(DROP))]
