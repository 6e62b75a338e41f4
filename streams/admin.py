"""Topic administration: create the service's topics with the configured partitions."""

from __future__ import annotations

import contextlib
import logging

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from streams.settings import Settings
from streams.topics import ALL_TOPICS, MODEL_TOPICS

log = logging.getLogger(__name__)


async def ensure_topics(settings: Settings) -> list[str]:
    """Create every topic of :mod:`streams.topics` that does not exist yet.

    Returns the names created. Existing topics are left as they are (their partition count
    included: changing it would move keys between partitions).
    """
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers,
                                **settings.kafka_client_options())
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [
            NewTopic(settings.topic(spec.name),
                     num_partitions=spec.partitions or settings.partitions,
                     replication_factor=settings.replication_factor,
                     topic_configs={"cleanup.policy": "compact"} if spec.compacted else {})
            for spec in (*ALL_TOPICS, *MODEL_TOPICS)
            if settings.topic(spec.name) not in existing
        ]
        if wanted:
            with contextlib.suppress(TopicAlreadyExistsError):  # created meanwhile elsewhere
                await admin.create_topics(wanted)
            log.info("created topics %s with %d partitions",
                     ", ".join(t.name for t in wanted), settings.partitions)
        return [t.name for t in wanted]
    finally:
        await admin.close()
