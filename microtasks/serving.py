"""Serving units: fair, atomic assignment with leases, kept in Redis as a cache of the database.

The database holds the truth: every serving is an ``assignment`` row (unit, volunteer,
lease expiry) and every answer an ``answer`` row; a unit's counted answers are
incremented by one conditional ``UPDATE`` that never passes the unit's need. Redis
holds, per project, what makes the next-unit call fast and atomic across any number of
web processes and machines:

* ``avail``: a sorted set of the units with a free slot, ordered by the project's strategy;
* ``u:<unit>``: a hash with the unit's need, counted answers, leases in flight, priority
  and whether it retired;
* ``leases``: a sorted set of ``<unit>:<volunteer>`` by expiry;
* ``seen:<volunteer>`` and ``held:<volunteer>``: the units a volunteer was ever served,
  and those they hold a live lease on;
* ``gold``: the project's gold units; ``cfg``: the project's serving settings.

Two Lua scripts change this state atomically: one leases units to a volunteer
(reclaiming expired leases first, so an expired lease frees its slot), one records an
answer. Leases in flight count toward a unit's need, so a unit is never handed out
more often than it needs answers. If Redis loses the state (flushed, restarted), the
next call finds ``cfg`` missing and the project is rebuilt from the database, live
leases included.

This module takes a Redis client as an argument and never imports Redis itself.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Protocol

from sqlalchemy import and_, exists, select
from sqlalchemy.orm import Session

from microtasks.db import upsertable_insert
from microtasks.errors import Conflict, NotFound
from microtasks.models import Answer, Assignment, Project, Unit, UnitState
from microtasks.quarantine import start_qualifying

#: Units leased in one next-unit call at most.
MAX_BATCH = 20
#: Expired leases reclaimed per call at most (the rest on later calls).
RECLAIM_LIMIT = 200
#: Units scanned per call at most when looking for ones the volunteer has not seen.
SCAN_LIMIT = 2000

_SCORE = """
local function score(strategy, uid, filled, prio)
  if strategy == 'breadth_first' then return filled * 4294967296 + uid end
  if strategy == 'random' then return (uid * 2654435761) % 4294967296 end
  if strategy == 'priority' then return (4096 - prio) * 1099511627776 - filled * 4294967296 + uid end
  return -filled * 4294967296 + uid
end

local function refresh(p, strategy, uid)
  local f = redis.call('HMGET', p .. 'u:' .. uid, 'need', 'answers', 'leased', 'retired', 'prio', 'gold')
  if f[1] == false or f[6] == '1' then return end
  local filled = tonumber(f[2]) + tonumber(f[3])
  if f[4] == '1' or filled >= tonumber(f[1]) then
    redis.call('ZREM', p .. 'avail', uid)
  else
    redis.call('ZADD', p .. 'avail', score(strategy, tonumber(uid), filled, tonumber(f[5])), uid)
  end
end
"""

#: KEYS: none (all keys share the project's prefix, given as ARGV[1]).
#: ARGV: prefix, volunteer, now, count, random numbers (count + 1 of them).
#: Returns -1 when the project is not loaded, else a flat list of: unit id, expiry, gold flag, new-serving flag
#: (0 a live lease, 1 a new serving, 2 the volunteer's first serving in a project with a qualification),
#: media file, width, height.
NEXT_SCRIPT = _SCORE + """
local p, vid, now, want = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local cfg = redis.call('HMGET', p .. 'cfg', 'lease', 'strategy', 'warm_rate', 'warm', 'rate', 'qual')
if cfg[1] == false then return -1 end
local lease, strategy = tonumber(cfg[1]), cfg[2]
local warm_rate, warm, rate = tonumber(cfg[3]), tonumber(cfg[4]), tonumber(cfg[5])
local qual = tonumber(cfg[6] or '0')
local seen, held = p .. 'seen:' .. vid, p .. 'held:' .. vid
-- New servings are flagged 1, or 2 for a volunteer's first in a project with a qualification.
local fresh_flag = (qual > 0 and redis.call('SCARD', seen) == 0) and 2 or 1

-- Expired leases free their slots.
local expired = redis.call('ZRANGEBYSCORE', p .. 'leases', '-inf', now, 'LIMIT', 0, %(reclaim)d)
for _, member in ipairs(expired) do
  local uid, owner = string.match(member, '^(%%d+):(.+)$')
  redis.call('ZREM', p .. 'leases', member)
  redis.call('ZREM', p .. 'held:' .. owner, uid)
  redis.call('HINCRBY', p .. 'u:' .. uid, 'leased', -1)
  refresh(p, strategy, uid)
end

local out = {}
-- Units this volunteer already holds a live lease on come first (a reload spends no slot).
local mine = redis.call('ZRANGEBYSCORE', held, '(' .. now, '+inf', 'WITHSCORES', 'LIMIT', 0, want)
local function emit(uid, expiry, fresh)
  local f = redis.call('HMGET', p .. 'u:' .. uid, 'gold', 'media', 'w', 'h')
  for _, v in ipairs({tonumber(uid), expiry, f[1] == '1' and 1 or 0, fresh, f[2], f[3], f[4]}) do
    table.insert(out, v)
  end
end
for i = 1, #mine, 2 do emit(mine[i], tonumber(mine[i + 1]), 0) end
want = want - #mine / 2
if want <= 0 then return out end

local function take(uid, gold)
  local expiry = now + lease
  redis.call('SADD', seen, uid)
  redis.call('ZADD', held, expiry, uid)
  if gold == 0 then
    redis.call('HINCRBY', p .. 'u:' .. uid, 'leased', 1)
    redis.call('ZADD', p .. 'leases', expiry, uid .. ':' .. vid)
    refresh(p, strategy, uid)
  end
  emit(uid, expiry, fresh_flag)
end

-- Gold units: only gold for a volunteer's first units while a project's qualification asks for them,
-- a high rate for a new volunteer's first units, then a lower one; each gold unit once.
local served = redis.call('SCARD', seen)
local golds = 0
for i = 0, want - 1 do
  local r = (served + i < qual) and 1 or ((served + i < warm) and warm_rate or rate)
  if tonumber(ARGV[5 + i]) < r then golds = golds + 1 end
end
if golds > 0 then
  local fresh = redis.call('SDIFF', p .. 'gold', seen)
  local pick = math.floor(tonumber(ARGV[5 + want]) * #fresh)
  for i = 1, math.min(golds, #fresh) do
    take(fresh[((pick + i - 1) %% #fresh) + 1], 1)
  end
end

-- Ordinary units in strategy order, skipping those this volunteer has seen.
local needed = want - (#out / 7 - #mine / 2)
if needed <= 0 then return out end
local avail = p .. 'avail'
local total = redis.call('ZCARD', avail)
local start = 0
if strategy == 'random' and total > 0 then start = math.floor(tonumber(ARGV[5 + want]) * total) end
local picked, scanned, position = {}, 0, start
while #picked < needed and scanned < total and scanned < %(scan)d do
  local ids = redis.call('ZRANGE', avail, position, position + 63)
  if #ids == 0 then position = 0; ids = redis.call('ZRANGE', avail, 0, 63) end
  for _, uid in ipairs(ids) do
    scanned = scanned + 1
    if redis.call('SISMEMBER', seen, uid) == 0 then
      table.insert(picked, uid)
      if #picked >= needed then break end
    end
    if scanned >= total then break end
  end
  position = position + #ids
end
for _, uid in ipairs(picked) do take(uid, 0) end
return out
""" % {"reclaim": RECLAIM_LIMIT, "scan": SCAN_LIMIT}

#: ARGV: prefix, unit, volunteer, counted answers (or -1 when the answer was not counted), retired (0/1).
#: Returns 1, or 0 when the project is not loaded, or -1 while it is being loaded (try again once it is).
ANSWER_SCRIPT = _SCORE + """
local p, uid, vid = ARGV[1], ARGV[2], ARGV[3]
local strategy = redis.call('HGET', p .. 'cfg', 'strategy')
if strategy == false then return redis.call('EXISTS', p .. 'loading') == 1 and -1 or 0 end
local u = p .. 'u:' .. uid
redis.call('ZREM', p .. 'held:' .. vid, uid)
if redis.call('ZREM', p .. 'leases', uid .. ':' .. vid) == 1 then redis.call('HINCRBY', u, 'leased', -1) end
-- Counts only grow: updates from concurrent requests may arrive out of order.
if tonumber(ARGV[4]) > tonumber(redis.call('HGET', u, 'answers') or '-1') then
  redis.call('HSET', u, 'answers', ARGV[4])
end
if ARGV[5] == '1' then redis.call('HSET', u, 'retired', '1') end
refresh(p, strategy, uid)
return 1
"""

#: ARGV: prefix, unit, need, retired (0/1). Changes a unit's need (adaptive redundancy). Returns as ANSWER_SCRIPT.
NEED_SCRIPT = _SCORE + """
local p, uid = ARGV[1], ARGV[2]
local strategy = redis.call('HGET', p .. 'cfg', 'strategy')
if strategy == false then return redis.call('EXISTS', p .. 'loading') == 1 and -1 or 0 end
if redis.call('EXISTS', p .. 'u:' .. uid) == 0 then return 0 end
redis.call('HSET', p .. 'u:' .. uid, 'need', ARGV[3], 'retired', ARGV[4])
refresh(p, strategy, uid)
return 1
"""


class RedisLike(Protocol):
    def register_script(self, script: str) -> Any: ...
    def pipeline(self, transaction: bool = True) -> Any: ...
    def set(self, name: str, value: Any, ex: int | None = None, nx: bool = False) -> Any: ...
    def delete(self, *names: str) -> Any: ...
    def exists(self, *names: str) -> int: ...
    def scan_iter(self, match: str | None = None, count: int | None = None) -> Any: ...


@dataclass(frozen=True)
class Lease:
    unit_id: int
    expires_at: datetime
    gold: bool
    media: str
    width: int
    height: int


#: Bumped whenever the layout of the cache changes, so a new deployment rebuilds rather than misreads it.
LAYOUT = 1


def prefix(project_id: int) -> str:
    """Key prefix of a project; the hash tag keeps a project's keys on one Redis Cluster slot."""
    return f"mt:v{LAYOUT}:{{p{project_id}}}:"



class Dispatcher:
    """Leases units to volunteers and records answers in the Redis cache of one deployment."""

    def __init__(self, redis: RedisLike) -> None:
        self.redis = redis
        self._next = redis.register_script(NEXT_SCRIPT)
        self._answer = redis.register_script(ANSWER_SCRIPT)
        self._need = redis.register_script(NEED_SCRIPT)

    # -- serving -------------------------------------------------------------------------

    def lease(self, session: Session, project_id: int, volunteer_id: int, count: int = 1,
              now: float | None = None) -> list[Lease]:
        """Lease up to ``count`` units to a volunteer: their live leases first, then gold, then new units.

        The project is read from the database only when its serving state must be
        (re)built, so the common call costs one Redis script and one insert. In a project
        with a qualification, a volunteer's first units are gold, and their first serving
        also records their qualifying quarantine entry (two statements, once per volunteer).
        The caller commits the session: the assignment rows written here are what lets
        the cache be rebuilt, and what the database's constraints check.
        """
        count = max(1, min(count, MAX_BATCH))
        now = time.time() if now is None else now
        randoms = [random.random() for _ in range(count + 1)]
        args = [prefix(project_id), volunteer_id, repr(now), count, *randoms]
        flat = self._next(args=args)
        if flat == -1:
            project = session.get(Project, project_id)
            if project is None:
                raise NotFound(f"No project {project_id}.")
            if not project.published:
                raise Conflict(f"Project {project_id} is not open to volunteers yet: its owner has not published it.")
            self.load(session, project)
            flat = self._next(args=args)
            if flat == -1:
                raise RuntimeError(f"project {project.id} could not be loaded into Redis")
        leases = [Lease(int(flat[i]), datetime.fromtimestamp(float(flat[i + 1]), timezone.utc), flat[i + 2] == 1,
                        flat[i + 4].decode(), int(flat[i + 5]), int(flat[i + 6])) for i in range(0, len(flat), 7)]
        if leases:
            # Live leases given again are written too (a row that exists is left as it is): the
            # first serving's commit may have failed after the script ran (the database went
            # away, the process was killed), and answers are taken only for served units.
            served_at = datetime.fromtimestamp(now, timezone.utc)
            session.execute(upsertable_insert(session, Assignment.__table__).on_conflict_do_nothing(), [
                {"unit_id": lease.unit_id, "volunteer_id": volunteer_id, "expires_at": lease.expires_at,
                 "served_at": served_at} for lease in leases])
            if 2 in flat[3::7]:  # the volunteer's first serving in a project with a qualification
                start_qualifying(session, project_id, volunteer_id)
        return leases

    def answered(self, answers: list[tuple[int, int, int, int | None, bool]]) -> None:
        """Update the cache after answers were committed: their leases end; full units leave ``avail``.

        Each answer is ``(project, unit, volunteer, counted answers or None, retired)``; one
        round trip serves them all. While a project is being rebuilt, which may have read the
        database before these answers were committed, they wait for it and are applied after.
        """
        for attempt in range(2):
            pipe = self.redis.pipeline(transaction=False)
            for project_id, unit_id, volunteer_id, counted, retired in answers:
                self._answer(args=[prefix(project_id), unit_id, volunteer_id, -1 if counted is None else counted,
                                   1 if retired else 0], client=pipe)
            answers = [a for a, done in zip(answers, pipe.execute()) if done == -1]
            if not answers or attempt:
                return
            self._wait_loaded({a[0] for a in answers})

    def set_need(self, project_id: int, unit_id: int, need: int, retired: bool) -> None:
        """Update the cache after a unit's need changed (a unit asked for more answers, or retired early)."""
        args = [prefix(project_id), unit_id, need, 1 if retired else 0]
        if self._need(args=args) == -1:
            self._wait_loaded({project_id})
            self._need(args=args)

    def _wait_loaded(self, project_ids: set[int], wait: float = 10.0) -> None:
        """Wait until the projects being rebuilt are loaded (or their rebuild gave up)."""
        deadline = time.monotonic() + wait
        for project_id in project_ids:
            p = prefix(project_id)
            while self.redis.exists(p + "loading") and not self.redis.exists(p + "cfg") \
                    and time.monotonic() < deadline:
                time.sleep(0.02)

    def invalidate(self, project_id: int) -> None:
        """Drop a project's serving settings, so the next call rebuilds it (new units, new settings)."""
        self.redis.delete(prefix(project_id) + "cfg")

    # -- rebuilding from the database ----------------------------------------------------

    def load(self, session: Session, project: Project, wait: float = 10.0) -> None:
        """Rebuild a project's serving state from the database (one process does it; others wait)."""
        p = prefix(project.id)
        lock = p + "loading"
        deadline = time.monotonic() + wait
        while not self.redis.set(lock, "1", ex=60, nx=True):
            if self.redis.exists(p + "cfg"):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"timed out waiting for project {project.id} to load")
            time.sleep(0.02)
        try:
            if self.redis.exists(p + "cfg"):
                return
            self._load(session, project, p)
        finally:
            self.redis.delete(lock)

    def _load(self, session: Session, project: Project, p: str) -> None:
        now = datetime.now(timezone.utc)
        stale = [key for key in self.redis.scan_iter(match=p + "*", count=1000) if not key.endswith(b"loading")]
        for start in range(0, len(stale), 1000):
            self.redis.delete(*stale[start:start + 1000])
        units = session.execute(
            select(Unit.id, Unit.redundancy, Unit.answer_count, Unit.state, Unit.priority, Unit.gold.is_not(None),
                   Unit.media, Unit.width, Unit.height)
            .where(Unit.project_id == project.id)
        ).all()
        answered = exists().where(and_(Answer.unit_id == Assignment.unit_id,
                                       Answer.volunteer_id == Assignment.volunteer_id))
        servings = session.execute(
            select(Assignment.unit_id, Assignment.volunteer_id, Assignment.expires_at, answered)
            .join(Unit, Unit.id == Assignment.unit_id).where(Unit.project_id == project.id)
        ).all()
        gold_ids = {row[0] for row in units if row[5]}
        leased: dict[int, int] = {}
        pipe = self.redis.pipeline(transaction=False)
        for unit_id, volunteer_id, expires_at, was_answered in servings:
            pipe.sadd(f"{p}seen:{volunteer_id}", unit_id)
            expires = expires_at if expires_at.tzinfo else expires_at.replace(tzinfo=timezone.utc)
            if not was_answered and expires > now:
                pipe.zadd(f"{p}held:{volunteer_id}", {unit_id: expires.timestamp()})
                if unit_id not in gold_ids:
                    pipe.zadd(f"{p}leases", {f"{unit_id}:{volunteer_id}": expires.timestamp()})
                    leased[unit_id] = leased.get(unit_id, 0) + 1
        strategy = project.strategy.value
        for unit_id, redundancy, answers, state, priority, gold, media, width, height in units:
            need = redundancy or project.redundancy
            retired = state is UnitState.retired
            pipe.hset(f"{p}u:{unit_id}", mapping={
                "need": need, "answers": answers, "leased": leased.get(unit_id, 0), "retired": int(retired),
                "prio": max(-4000, min(4000, priority)), "gold": int(gold), "media": media or "",
                "w": width or 0, "h": height or 0})
            if gold:
                pipe.sadd(f"{p}gold", unit_id)
            elif not retired and answers + leased.get(unit_id, 0) < need:
                pipe.zadd(f"{p}avail", {unit_id: score(strategy, unit_id, answers + leased.get(unit_id, 0),
                                                      priority)})
        pipe.hset(p + "cfg", mapping={
            "lease": project.lease_seconds, "strategy": strategy, "warm_rate": project.gold_warmup_rate,
            "warm": project.gold_warmup, "rate": project.gold_rate, "qual": project.qualification})
        pipe.execute()


def skip(session: Session, volunteer_id: int, unit_id: int) -> int:
    """A volunteer passes on a unit they were served: their lease ends now and the slot goes to someone else.

    The unit stays served to them (never offered to them again). Returns its project id;
    after committing, call :meth:`Dispatcher.answered` with no count so serving follows.
    """
    assignment = session.scalars(select(Assignment).where(
        Assignment.unit_id == unit_id, Assignment.volunteer_id == volunteer_id)).first()
    if assignment is None:
        raise Conflict("This unit was not served to you.", field="unit_id")
    assignment.expires_at = datetime.now(timezone.utc)  # an expired lease stays expired
    session.flush()
    return session.scalar(select(Unit.project_id).where(Unit.id == unit_id))


def change_need(session: Session, unit_id: int, need: int) -> tuple[int, int, int, bool]:
    """Set how many answers a unit needs: fewer to retire it early, more (up to the project's
    ``max_redundancy``) to ask for more when its volunteers disagree.

    Returns ``(project id, unit id, need, retired)``; after committing, pass them to
    :meth:`Dispatcher.set_need` so serving follows at once.
    """
    unit = session.get(Unit, unit_id)
    if unit is None:
        raise NotFound(f"No unit {unit_id}.")
    need = max(1, min(need, unit.project.max_redundancy))
    unit.redundancy = need
    unit.state = UnitState.retired if unit.answer_count >= need else UnitState.open
    return unit.project_id, unit.id, need, unit.state is UnitState.retired


def score(strategy: str, unit_id: int, filled: int, priority: int) -> float:
    """The sort key of an available unit (lower is served first); the Lua ``score`` computes the same."""
    if strategy == "breadth_first":
        return filled * 4294967296 + unit_id
    if strategy == "random":
        return (unit_id * 2654435761) % 4294967296
    if strategy == "priority":
        return (4096 - max(-4000, min(4000, priority))) * 1099511627776 - filled * 4294967296 + unit_id
    return -filled * 4294967296 + unit_id

