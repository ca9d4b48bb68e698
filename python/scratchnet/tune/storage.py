"""The study's database: opened with heartbeats and the retry of trials
whose worker died, every call retried while the database is away, the URL
shown without its password, and a lock that keeps the trial budget exact
when workers start trials at the same moment."""

import contextlib
import fcntl
import hashlib
import threading
import time
import warnings

import optuna
import sqlalchemy
from sqlalchemy.engine import make_url

# What a database that went away raises, through Optuna or directly.
UNREACHABLE = (
    optuna.exceptions.StorageInternalError,
    sqlalchemy.exc.OperationalError,
    sqlalchemy.exc.InterfaceError,
)
BACKENDS = ("postgresql", "sqlite")



@contextlib.contextmanager
def _quiet():
    """Hides Optuna's notes that heartbeats are experimental and meant for
    Study.optimize: the workers are built on them, and the notes would be
    printed at every trial."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")
        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning,
                                message=r".*(heartbeat|fail_stale_trials|RetryHeartbeatStaleTrial)")
        yield


class StorageError(RuntimeError):
    """The study's database cannot be reached or used."""


def masked(url):
    """The URL with its password shown as ***."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except sqlalchemy.exc.ArgumentError:
        return "<not a database URL>"


def first_line(e):
    """The database's own words for an error, without SQLAlchemy's links."""
    cause = getattr(e, "orig", None) or e.__cause__ or e
    return str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__


class Storage:
    """An Optuna RDB storage for workers: heartbeats every `heartbeat`
    seconds, a trial without one for `grace` seconds failed and queued again
    with the same parameters (at most `retries` times), and each call
    retried for `db_wait` seconds while the database is unreachable."""

    def __init__(self, url, *, heartbeat=10, grace=None, retries=3, db_wait=60.0, log=print):
        self.url, self.shown, self.log = url, masked(url), log
        try:
            parsed = make_url(url)
        except sqlalchemy.exc.ArgumentError:
            raise ValueError(
                f"--storage {url!r}: not a database URL "
                "(postgresql://USER:PASSWORD@HOST:PORT/DB or sqlite:///PATH)"
            ) from None
        self.backend = parsed.get_backend_name()
        if self.backend not in BACKENDS:
            raise ValueError(f"--storage {self.shown}: {self.backend} is not supported "
                             f"(supported: {', '.join(BACKENDS)})")
        if heartbeat < 1 or (grace is not None and grace <= heartbeat):
            raise ValueError(f"heartbeat {heartbeat} s, grace {grace} s: need heartbeat >= 1 "
                             "and a grace period longer than the heartbeat")
        self.heartbeat_s, self.db_wait = heartbeat, db_wait
        self.sqlite_path = parsed.database if self.backend == "sqlite" else None
        connect = {"timeout": 30} if self.backend == "sqlite" else {"connect_timeout": 10}
        with _quiet():
            self.retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=retries)
        for attempt in range(3):
            try:
                with _quiet():
                    self.rdb = optuna.storages.RDBStorage(
                        url,
                        engine_kwargs={"pool_pre_ping": True, "connect_args": connect},
                        heartbeat_interval=heartbeat,
                        grace_period=grace,
                        heartbeat_stale_trial_callback=self.retry,
                    )
                break
            except UNREACHABLE as e:
                raise StorageError(f"cannot open the study's storage {self.shown}: "
                                   f"{first_line(e)}") from None
            except sqlalchemy.exc.DBAPIError as e:
                # Workers that open a new database together race to create
                # its tables; the losers find them made.
                if attempt == 2:
                    raise StorageError(f"cannot open the study's storage {self.shown}: "
                                       f"{first_line(e)}") from None
                time.sleep(0.5 + attempt)
        # Advisory locks belong to a connection: one of their own, closed
        # after use, so that a lock never outlives its holder.
        self.lock_engine = sqlalchemy.create_engine(
            url, poolclass=sqlalchemy.pool.NullPool, connect_args=connect
        ) if self.backend == "postgresql" else None

    def call(self, what, fn):
        """fn(), retried while the database is unreachable; StorageError
        after `db_wait` seconds of trying."""
        deadline = None
        while True:
            try:
                with _quiet():
                    return fn()
            except UNREACHABLE as e:
                now = time.monotonic()
                if deadline is None:
                    deadline = now + self.db_wait
                    self.log(f"{self.shown}: {what}: {first_line(e)}; "
                             f"retrying for {self.db_wait:g} s")
                if now >= deadline:
                    raise StorageError(
                        f"the study's storage {self.shown} was unreachable for "
                        f"{self.db_wait:g} s while {what}: {first_line(e)}"
                    ) from None
                time.sleep(min(1.0, max(0.0, deadline - now)))

    @contextlib.contextmanager
    def heartbeat(self, trial_id):
        """Records the trial's heartbeat every `heartbeat` seconds from a
        thread while the block runs (training releases the GIL). A beat the
        database misses is tried again at the next; the grace period allows
        for it."""
        self.call("recording a heartbeat", lambda: self.rdb.record_heartbeat(trial_id))
        stop = threading.Event()

        def beat():
            while not stop.wait(self.heartbeat_s):
                try:
                    self.rdb.record_heartbeat(trial_id)
                except UNREACHABLE:
                    pass

        thread = threading.Thread(target=beat, name=f"heartbeat-{trial_id}", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()

    @contextlib.contextmanager
    def lock(self, study_name):
        """Holds the study's lock, the same for every worker on every machine:
        an advisory lock in PostgreSQL, a file lock on the SQLite database."""
        if self.backend == "postgresql":
            key = int.from_bytes(
                hashlib.sha256(f"scratchnet-tune:{study_name}".encode()).digest()[:8],
                "big", signed=True,
            )
            with self.lock_engine.connect() as c:
                c.execute(sqlalchemy.text("SELECT pg_advisory_lock(:k)"), {"k": key})
                try:
                    yield
                finally:
                    c.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:k)"), {"k": key})
        elif self.sqlite_path in (None, "", ":memory:"):
            yield
        else:
            with locked(self.sqlite_path):
                yield


@contextlib.contextmanager
def locked(path):
    """Holds an exclusive lock on the file `path` (made if missing), against
    other processes on the machine or on a file system that shares locks."""
    with open(path, "a+b") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
