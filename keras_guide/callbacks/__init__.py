"""Training callbacks for GUIDE: schedules and the gap monitor."""

from keras_guide.callbacks.gap_monitor import GapMonitor
from keras_guide.callbacks.gap_monitor import gap_closed
from keras_guide.callbacks.guide_schedule import GuideSchedule
from keras_guide.callbacks.guide_schedule import scheduled_value

__all__ = [
    "GapMonitor",
    "GuideSchedule",
    "gap_closed",
    "scheduled_value",
]
