"""The API calls tests make again and again: register an instance, back it up, restore."""

from __future__ import annotations

from typing import Any

from tests.support.service import Api, seed_body

from pgvault.pgtools.localserver import LocalServer


def register(api: Api, server: LocalServer, name: str, *, user: str = "postgres", password: str | None = None,
             version: str = "18", plan: str = "default") -> tuple[dict[str, Any], str]:
    body = seed_body(host="127.0.0.1", port=server.port, user=user, password=password or server.password,
                     name=name, version=version, plan=plan)
    r = api.post("/Instance", json=body)
    assert r.status_code == 200, r.text
    out = r.json()
    return out["response"]["entity"], out["processinginstructioninfo"]["attributes"][1]["value"]


def backup_now(api: Api, subclient_id: int) -> str:
    r = api.post(f"/Subclient/{subclient_id}/action/backup", params={"backupLevel": "full"})
    assert r.status_code == 200, r.text
    return str(r.json()["jobIds"][0])


def restore_body(source: dict[str, Any], items: list[str], *, dest: dict[str, Any] | None = None,
                 overwrite: bool = False, table_level: bool = False, job_id: str | None = None,
                 ref_time: str | None = None, **pg_options: Any) -> dict[str, Any]:
    """The shape cvpysdk's restore_postgres_server sends (Instance._restore_json), trimmed to what matters."""
    pg = {"restoreToSameServer": False, "tableLevelRestore": table_level, "instanceRestore": False,
          "fsBackupSetRestore": "", "isCloneRestore": False, "refTime": {}, **pg_options}
    if ref_time:
        pg["refTime"] = {"timevalue": ref_time}
    restore_options: dict[str, Any] = {
        "browseOption": {"backupset": {"clientName": "default", "appName": "postgresql"},
                         "timeRange": {}, "commCellId": 2},
        "commonOptions": {"unconditionalOverwrite": overwrite},
        "destination": {"destinationInstance": dest or {"clientName": "default",
                                                        "instanceName": source["instanceName"],
                                                        "appName": "postgresql"},
                        "destClient": {"clientName": "default"}},
        "fileOption": {"sourceItem": items},
        "postgresRstOption": pg,
    }
    if job_id is not None:
        restore_options["jobIds"] = [job_id]
    return {"taskInfo": {
        "associations": [{"clientName": "default", "instanceName": source["instanceName"],
                          "appName": "postgresql", "backupsetName": "DumpBasedBackupSet",
                          "instanceId": source["instanceId"]}],
        "task": {"initiatedFrom": 2, "taskType": 1, "policyType": 0, "taskFlags": {"disabled": False}},
        "subTasks": [{"subTask": {"subTaskType": 3, "operationType": 1001},
                      "options": {"restoreOptions": restore_options}}],
    }}


def restore(api: Api, body: dict[str, Any]) -> str:
    r = api.post("/CreateTask", json=body)
    assert r.status_code == 200, r.text
    return str(r.json()["jobIds"][0])
