"""The object engine: the storage rules that S3 handlers and background jobs share.

It takes plain values (records, locations, byte streams), never HTTP requests, and keeps the
invariants written in gateway/metadata/base.py:

1. A stored piece is immutable and exactly addressed: every write goes to a key of its own
   (Location.new_key), pinned by the backend's version handle where it has one.
2. A failed request changes nothing: an intent is recorded before the bytes are written and
   removed by the commit that references them; a write that does not commit abandons its
   intent, which turns its bytes into garbage (never the bytes of the live object).
3. Garbage is collected, never guessed: only rows of the garbage ledger are deleted, by the
   collector (gateway/objects/collector.py); fsck (gateway/objects/fsck.py) checks the rest.
4. Durable before acknowledged: translators return only once the bytes are durable, and the
   metadata commit is durable before the response (see StorageSettings.durability).
"""

from gateway.objects.engine import Engine, PieceWrite

__all__ = ["Engine", "PieceWrite"]
