"""Python client of livegate's SSE stream.

    from livegate_client import Subscription

    for update in Subscription("http://127.0.0.1:8000", ["sport-livescore/*"]):
        print(update.channel, update.version, update.document["score"])

From a shell: ``python -m livegate_client tail URL CHANNEL...`` (see --help).
Needs ``pip install httpx httpx-sse jsonpatch``.
"""

from livegate_client.subscription import (
    ChannelDocument,
    StreamRejected,
    Subscription,
    Update,
    stream_url,
)

__all__ = ["ChannelDocument", "StreamRejected", "Subscription", "Update", "stream_url"]
