"""Registering, reading and deleting protected instances."""

from __future__ import annotations

import base64
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from sqlalchemy import Connection, Integer, bindparam, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..catalog.models import Backupset, CloudAccount, Instance, Job, Plan, Subclient
from ..catalog.prepared import DriverReader, Prepared
from ..catalog.types import utcnow
from ..crypto import Sealer
from ..domain.jobs import ACTIVE
from ..domain.schedule import Schedule, Scheduled
from ..domain.targets import TargetPolicy
from ..errors import BadRequest, Conflict, NotFound, shown
from ..pgtools.connection import ServerAddress, ServerInfo
from ..schemas.instance import CreateInstanceRequest, InstanceRow, SdkCreateInstanceRequest, parse_host_port
from . import credentials, jobs

PASSWORD_CONTEXT = "instance.password"  # noqa: S105 - an AEAD context label


def find_cloud_account(session: Session, name: str) -> CloudAccount:
    account = session.scalar(select(CloudAccount).where(CloudAccount.name_key == name.lower()))
    if account is None:
        raise NotFound(f"cloud account (client) {shown(name)} does not exist")
    return account


def find_plan(session: Session, name: str) -> Plan:
    plan = session.scalar(select(Plan).where(Plan.name_key == name.lower()))
    if plan is None:
        raise NotFound(f"plan {shown(name)} does not exist")
    return plan


@dataclass
class Registration:
    """A validated request, ready to be probed and stored."""

    name: str
    client_name: str
    plan_name: str
    address: ServerAddress
    declared_version: str


def check_target(policy: TargetPolicy, host: str) -> None:
    """Refuse a server pgvault is not allowed to reach (``PGVAULT_ALLOWED_TARGETS``), before any connection."""
    if not policy.allows(host):
        raise BadRequest(f"postGreSQLInstance.port: {shown(host)} is not among the servers pgvault may reach "
                         f"(PGVAULT_ALLOWED_TARGETS: {policy.describe()})")


def check_request(req: CreateInstanceRequest, connect_timeout: int, policy: TargetPolicy) -> Registration:
    props = req.instanceProperties
    pg = props.postGreSQLInstance
    host, port = parse_host_port(pg.port)
    check_target(policy, host)
    ca = pg.sslOpt.sslCa or None
    if ca is not None:
        if not pg.sslOpt.sslEnabled:
            raise BadRequest("sslOpt.sslCa is given but sslOpt.sslEnabled is false")
        path = Path(ca)
        if not path.is_file() or not os.access(path, os.R_OK):
            raise BadRequest(f"sslOpt.sslCa: the CA file {shown(ca)} does not exist or cannot be read")
    declared_major(props.version)
    return Registration(
        name=props.instance.instanceName or pg.port,
        client_name=props.instance.clientName or "default",
        plan_name=props.planEntity.planName,
        address=ServerAddress(
            host=host, port=port, user=pg.SAUser.userName, password=pg.SAUser.plain_password,
            dbname=pg.MaintainenceDB, ssl_enabled=pg.sslOpt.sslEnabled, ssl_ca=ca,
            connect_timeout=connect_timeout,
        ),
        declared_version=props.version,
    )


def declared_major(version: str) -> str:
    """"14", "14.2", "PostgreSQL 14" -> "14"; "9.6.24" -> "9.6" (majors before 10 had two parts)."""
    m = re.search(r"([0-9]{1,4})(?:\.([0-9]{1,4}))?", version)
    if not m:
        raise BadRequest(f"version {shown(version)} is not a PostgreSQL version")
    major = int(m.group(1))
    if major < 10 and m.group(2) is not None:
        return f"{major}.{m.group(2)}"
    return str(major)


def server_major(info: ServerInfo) -> str:
    return info.pg_version.major_label


def ensure_name_free(session: Session, account: CloudAccount, name: str) -> None:
    clash = session.scalar(
        select(Instance.id).where(Instance.cloud_account_id == account.id, Instance.name_key == name.lower(),
                                  Instance.deleted_at.is_(None))
    )
    if clash is not None:
        raise Conflict(f"an instance named {shown(name)} already exists in cloud account {account.name!r}")


def same_server(session: Session, inst: Instance) -> list[str]:
    """The names of the other live instances registered for the same ``host:port`` (host names compared
    without case), in any cloud account."""
    return registered_as(session, inst.host, inst.port, inst.id)


def registered_as(session: Session, host: str, port: int, except_id: int | None = None) -> list[str]:
    """The names of the live instances registered for ``host:port`` (but ``except_id``), in id order."""
    q = select(Instance.name).where(func.lower(Instance.host) == host.lower(), Instance.port == port,
                                    Instance.deleted_at.is_(None))
    if except_id is not None:
        q = q.where(Instance.id != except_id)
    return list(session.scalars(q.order_by(Instance.id)))


def create(session: Session, reg: Registration, info: ServerInfo, sealer: Sealer) -> tuple[Instance, Job]:
    """Store the instance, its backupset and default subclient, and queue its first backup: one
    transaction (the caller's), so a crash leaves either all of it or none."""
    account = find_cloud_account(session, reg.client_name)
    plan = find_plan(session, reg.plan_name)
    ensure_name_free(session, account, reg.name)
    inst = Instance(
        cloud_account=account, plan=plan, name=reg.name, name_key=reg.name.lower(),
        host=reg.address.host, port=reg.address.port, maintenance_db=reg.address.dbname,
        username=reg.address.user,
        password_sealed=sealer.seal(reg.address.password.encode(), PASSWORD_CONTEXT),
        ssl_enabled=reg.address.ssl_enabled, ssl_ca=reg.address.ssl_ca,
        declared_version=reg.declared_version, server_version=info.version,
        server_version_num=info.version_num,
    )
    session.add(inst)
    try:
        session.flush()
    except IntegrityError:
        raise Conflict(f"an instance named {shown(reg.name)} already exists in cloud account "
                       f"{account.name!r}") from None
    backupset = Backupset(instance=inst, name="DumpBasedBackupSet", is_default=True)
    session.add(backupset)
    session.add(Subclient(instance=inst, backupset=backupset, name="default", is_default=True))
    session.flush()
    session.refresh(inst)
    job = jobs.queue_backup(session, inst)
    return inst, job


def address_of(inst: Instance, sealer: Sealer, connect_timeout: int, policy: TargetPolicy) -> ServerAddress:
    """How a job reaches the instance; refused when ``PGVAULT_ALLOWED_TARGETS`` no longer allows it."""
    check_target(policy, inst.host)
    return ServerAddress(
        host=inst.host, port=inst.port, user=inst.username,
        password=sealer.open(inst.password_sealed, PASSWORD_CONTEXT).decode(),
        dbname=inst.maintenance_db, ssl_enabled=inst.ssl_enabled, ssl_ca=inst.ssl_ca,
        connect_timeout=connect_timeout,
    )


def get(session: Session, instance_id: int) -> Instance:
    inst = session.get(Instance, instance_id)
    if inst is None or inst.deleted_at is not None:
        raise NotFound(f"instance {instance_id} does not exist")
    return inst


def is_placeholder(inst: Instance) -> bool:
    """The deleted row that holds id 1 for cvpysdk's sake (``services.bootstrap``) is not an instance: it
    has no subclient and never had a job or a backup. Every real instance gets its subclient when it is
    created. (A catalog older than the placeholder may have a real instance 1, so the id alone says nothing.)"""
    return not inst.subclients


def get_any(session: Session, instance_id: int) -> Instance:
    """A live or deleted instance (a deleted one keeps its backups, which still age and restore by id);
    never the placeholder."""
    inst = session.get(Instance, instance_id)
    if inst is None or is_placeholder(inst):
        raise NotFound(f"instance {instance_id} does not exist")
    return inst


# -- reading live instances as rows (GET /Instance, GET /Instance/{id}) ---------------------------------
#
# One statement per page, with SQLAlchemy Core: the page's ids first (an index scan of the live
# instances, ix_instances_live_id, so that OFFSET skips index entries rather than rows), then each row
# joined with its cloud account and plan, and its first backupset and subclient (by id, as the ORM's
# ``backupsets[0]`` and ``subclients[0]`` were). No ORM objects: a page of 100 used to build ~300 of them.
# The rows become ``schemas.instance.InstanceRow``s, which ``instance_properties`` reads.

_i, _ca, _p, _bs, _sc = (m.__table__ for m in (Instance, CloudAccount, Plan, Backupset, Subclient))
_ROW_COLUMNS = (
    _i.c.id, _i.c.name, _i.c.cloud_account_id, _ca.c.name.label("client_name"), _i.c.plan_id,
    _p.c.name.label("plan_name"), _i.c.declared_version, _i.c.server_version, _i.c.maintenance_db, _i.c.host,
    _i.c.port, _i.c.username, _i.c.ssl_enabled, _i.c.ssl_ca, _i.c.created_at,
    select(func.min(_bs.c.id)).where(_bs.c.instance_id == _i.c.id).scalar_subquery().label("backupset_id"),
    select(func.min(_sc.c.id)).where(_sc.c.instance_id == _i.c.id).scalar_subquery().label("subclient_id"),
    # what the timing needs of the plan (domain.schedule.Schedule)
    _p.c.schedule_kind.label("plan_schedule_kind"), _p.c.rpo_minutes.label("plan_rpo_minutes"),
    _p.c.cron.label("plan_cron"), _p.c.timezone.label("plan_timezone"),
    _p.c.window_start.label("plan_window_start"), _p.c.window_end.label("plan_window_end"),
    *jobs.backup_state(_i.c.id),
)
_PLAN_FIELDS = ("schedule_kind", "rpo_minutes", "cron", "timezone", "window_start", "window_end")


def _rows_of(ids: Any) -> Any:
    ids = ids.subquery()
    return (select(*_ROW_COLUMNS)
            .select_from(ids.join(_i, _i.c.id == ids.c.id).join(_ca, _ca.c.id == _i.c.cloud_account_id)
                         .join(_p, _p.c.id == _i.c.plan_id))
            .order_by(_i.c.id))


def _page(by_account: bool, limited: bool) -> Any:
    ids = select(_i.c.id).where(_i.c.deleted_at.is_(None))
    if by_account:
        ids = ids.where(_i.c.cloud_account_id == bindparam("client_id", type_=Integer))
    ids = ids.order_by(_i.c.id).offset(bindparam("offset", type_=Integer))
    if limited:
        ids = ids.limit(bindparam("limit", type_=Integer))
    return _rows_of(ids)


# Built once: building a statement of this size costs more than running it. Prepared (catalog.prepared):
# run on the driver's cursor when the caller has one.
_PAGES = {(a, lim): Prepared(_page(a, lim), InstanceRow) for a in (False, True) for lim in (False, True)}
_ONE = Prepared(_rows_of(select(_i.c.id).where(_i.c.id == bindparam("instance_id", type_=Integer),
                                               _i.c.deleted_at.is_(None))), InstanceRow)


assert tuple(c.name for c in _ONE.stmt.selected_columns) == InstanceRow._fields


def live_rows(conn: DriverReader | Session | Connection, client_id: int | None = None, *, offset: int = 0,
              limit: int | None = None) -> list[InstanceRow]:
    """A page of live instances (of one cloud account, with ``client_id``) in id order."""
    params: dict[str, int] = {"offset": offset}
    if client_id is not None:
        params["client_id"] = client_id
    if limit is not None:
        params["limit"] = limit
    return _PAGES[client_id is not None, limit is not None].all(conn, **params)


def live_row(conn: DriverReader | Session | Connection, instance_id: int) -> InstanceRow:
    row = _ONE.first(conn, instance_id=instance_id)
    if row is None:
        raise NotFound(f"instance {instance_id} does not exist")
    return row


def schedules(rows: Sequence[InstanceRow]) -> list[Scheduled]:
    """What ``domain.schedule.next_backup_times`` needs of each row (one ``Schedule`` per plan of the page)."""
    plans: dict[int, Schedule] = {}
    out = []
    for r in rows:
        schedule = plans.get(r.plan_id)
        if schedule is None:
            schedule = plans[r.plan_id] = Schedule(**{f: getattr(r, "plan_" + f) for f in _PLAN_FIELDS})
        out.append(Scheduled(r.id, schedule, r.created_at, r.last_backup_start, r.last_backup_end,
                             r.backup_active))
    return out


def delete(session: Session, instance_id: int) -> Instance:
    """Soft delete: the row stays so that its jobs and restore points keep their meaning (backups stay
    unless asked to go). Running or waiting backups are killed first."""
    inst = get(session, instance_id)
    for job in session.scalars(select(Job).where(Job.instance_id == inst.id, Job.status.in_(ACTIVE))):
        jobs.request_kill(session, job.id)
    inst.deleted_at = utcnow()
    session.flush()
    return inst


def from_sdk_request(session: Session, req: SdkCreateInstanceRequest, sealer: Sealer) -> CreateInstanceRequest:
    """cvpysdk's ``add_postgresql_instance`` body, mapped to the seed's request (docs/api.md):
    ``credentialEntity.credentialName`` -> SAUser (the credential's login), ``logStoragePolicy
    .storagePolicyName`` -> planEntity (empty: ``default``), appName PostgreSQL -> applicationId 125,
    and cloudDBEngineType/dbEngine, which the SDK cannot send, -> POSTGRESQL/PostgreSQL."""
    props = req.instanceProperties
    pg = props.postGreSQLInstance
    name = pg.credentialEntity.credentialName
    if not name:
        raise BadRequest("instanceProperties.postGreSQLInstance.credentialEntity.credentialName is required: "
                         "the credential (V4/Credential) holding the PostgreSQL login")
    cred = credentials.find(session, name)
    policy = pg.logStoragePolicy.storagePolicyName
    planned = props.planEntity.planName if props.planEntity else ""
    if policy and planned and policy.lower() != planned.lower():
        raise BadRequest(f"logStoragePolicy.storagePolicyName {shown(policy)} and planEntity.planName {shown(planned)} "
                         "name different plans")
    plan_name = policy or planned or "default"
    if session.scalar(select(Plan.id).where(Plan.name_key == plan_name.lower())) is None:
        raise NotFound(f"storage policy {shown(plan_name)} is not a pgvault plan (logStoragePolicy.storagePolicyName "
                       "names the plan; GET /V2/Plan lists them)")
    password = credentials.password_of(cred, sealer)
    try:
        return CreateInstanceRequest.model_validate({"instanceProperties": {
            "instance": {"instanceName": props.instance.instanceName, "applicationId": props.instance.applicationId,
                         "clientName": props.instance.clientName},
            "version": props.version,
            "postGreSQLInstance": {
                "MaintainenceDB": pg.MaintainenceDB, "port": pg.port,
                "SAUser": {"userName": cred.username, "password": base64.b64encode(password.encode()).decode()},
                "cloudDBEngineType": pg.cloudDBEngineType, "sslOpt": pg.sslOpt.model_dump(),
            },
            "planEntity": {"planName": plan_name},
            "dbEngine": props.dbEngine,
        }})
    except ValidationError as exc:  # a credential stored before its rules were the seed's (control characters)
        reasons = "; ".join(f"{'.'.join(str(p) for p in e['loc'][-2:])}: {e['msg']}" for e in exc.errors())
        raise BadRequest(f"credential {shown(name)} holds a login pgvault cannot use ({reasons}); "
                         "replace the credential") from None
