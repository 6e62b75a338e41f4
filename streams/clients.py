"""Starting aiokafka clients so that a failed start leaves nothing open.

``AIOKafkaConsumer.start()`` and ``AIOKafkaProducer.start()`` open connections before they
can fail (an unreachable broker, a refused login); a client whose start failed must still be
stopped, or asyncio logs "Unclosed AIOKafka..." after the command's one-line error.
"""

from __future__ import annotations

from typing import Any


async def start_client(client: Any) -> None:
    """``await client.start()``; on failure stop the client, then re-raise."""
    try:
        await client.start()
    except BaseException:
        await client.stop()
        raise
