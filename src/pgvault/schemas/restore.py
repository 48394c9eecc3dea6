"""POST /CreateTask for a restore: the parts of Command Center's task body pgvault reads.

The body cvpysdk sends (``Instance._restore_json``) carries much more; everything else is ignored.
pgvault's own additions live in ``postgresRstOption`` (``restoreGlobals``, ``renameDatabases``,
``restoreOwnership``, ``parallelism``) and are documented in docs/api.md.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from .common import JobIdsResponse, WireModel


class SubTask(WireModel):
    subTaskType: int
    operationType: int


class TimeRange(WireModel):
    fromTime: int | str | None = None
    toTime: int | str | None = None
    fromTimeValue: str | None = None
    toTimeValue: str | None = None


class BrowseOption(WireModel):
    backupset: dict[str, Any] = {}
    timeRange: TimeRange = TimeRange()


class DestinationInstance(WireModel):
    clientName: str | None = None
    instanceName: str | None = None
    instanceId: int | None = None


class Destination(WireModel):
    destinationInstance: DestinationInstance = DestinationInstance()
    destClient: dict[str, Any] = {}


class FileOption(WireModel):
    sourceItem: list[str] = Field(min_length=1)


class CommonOptions(WireModel):
    unconditionalOverwrite: bool = False


class PostgresRstOption(WireModel):
    tableLevelRestore: bool = False
    refTime: dict[str, Any] = {}
    pointOfTime: dict[str, Any] = {}
    restoreGlobals: bool = False
    renameDatabases: dict[str, str] = {}
    restoreOwnership: bool = False
    parallelism: int = Field(2, ge=1, le=16)


class RestoreOptions(WireModel):
    browseOption: BrowseOption = BrowseOption()
    jobIds: list[int | str] = []
    destination: Destination = Destination()
    fileOption: FileOption
    commonOptions: CommonOptions = CommonOptions()
    postgresRstOption: PostgresRstOption = PostgresRstOption()


class TaskOptions(WireModel):
    restoreOptions: RestoreOptions | None = None


class SubTaskEntry(WireModel):
    subTask: SubTask
    options: TaskOptions = TaskOptions()


class TaskInfo(WireModel):
    associations: list[dict[str, Any]] = []
    subTasks: list[SubTaskEntry] = Field(min_length=1)


class CreateTaskRequest(WireModel):
    taskInfo: TaskInfo


# -- answers ---------------------------------------------------------------------------------------

class CreateTaskResponse(JobIdsResponse):
    """``POST /CreateTask``: the restore job."""

    taskId: int

