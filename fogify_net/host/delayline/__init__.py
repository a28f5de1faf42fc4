"""User-space delay line: the `fogify-delayd` helper and its supervisor."""

from fogify_net.host.delayline.driver import (
    DelayLine,
    DelayLineError,
    QueueConfig,
    QueueStats,
)

__all__ = ["DelayLine", "DelayLineError", "QueueConfig", "QueueStats"]
