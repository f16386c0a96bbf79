"""A pool's free codes indexed in the order they are handed out: (pool, id).

Each email of a step with a code pool takes the pool's free code with the lowest id
(`ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED`). With the index on the pool alone
PostgreSQL either sorted every free code of the pool for each email (3.9 ms with
20,000 free) or walked the primary key past every code already handed out; read
from this index it takes the first entry.

Built and dropped CONCURRENTLY (outside a transaction), so codes keep being handed
out while the new index is built.
"""

from django.contrib.postgres.operations import AddIndexConcurrently, RemoveIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    atomic = False

    dependencies = [("campaigns", "0011_message_queued_in_order")]

    operations = [
        AddIndexConcurrently(
            model_name="promocode",
            index=models.Index(
                condition=models.Q(("message", None)),
                fields=["pool", "id"],
                name="promo_free_in_order",
            ),
        ),
        RemoveIndexConcurrently(model_name="promocode", name="promo_free"),
    ]
