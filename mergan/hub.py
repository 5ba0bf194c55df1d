"""Runs on the Hugging Face Hub, both ways, through huggingface_hub.

    mergan push runs/mnist-ra USER/mnist-ra               # card, settings, metrics, generators and pictures
    mergan push runs/mnist-ra USER/mnist-ra --dry-run     # what would be uploaded; nothing is sent
    mergan pull USER/mnist-ra@v1                          # into huggingface_hub's cache; prints the folder

    load_generator("USER/mnist-ra")                       # the generator after the run's last task
    python demo_app.py --runs USER/mergan-runs            # a repository of one run, or of runs in folders

A *source* is a local path when one exists; otherwise ``owner/name[@revision][/folder]`` names a Hub model
repository (huggingface_hub's file-system spelling): ``revision`` a branch, tag or commit (default ``main``),
``folder`` a run pushed with ``--path-in-repo``. Files are fetched once per commit into huggingface_hub's cache
(``HF_HUB_CACHE``); with ``HF_HUB_OFFLINE=1`` the cache alone answers. Only an evaluated run is pushed
(``card.evaluation``), with its card written for the repository.
"""
from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

from .checkpoints import CheckpointError
from .records import RecordError
from .runs import RunFolder

# owner/name, then @revision (no slash: a revision with one, such as refs/pr/1, goes in ``revision=``), then a folder
SOURCE = re.compile(r"(?P<repo>[\w.-]+/[\w.-]+)(?:@(?P<revision>[^/@]+))?(?:/(?P<folder>[^@]+))?")
LOCAL_SUFFIXES = (".safetensors", ".json", ".png", ".gif", ".md", ".pt")


class HubError(CheckpointError):
    """A run cannot be pushed to or fetched from the Hub; the message says why and what to do."""


@dataclass(frozen=True)
class HubSource:
    repo_id: str
    revision: str | None = None
    folder: str | None = None

    def __str__(self) -> str:
        revision, folder = f"@{self.revision}" if self.revision else "", f"/{self.folder}" if self.folder else ""
        return self.repo_id + revision + folder


def hub_source(source, revision: str | None = None) -> HubSource | None:
    """The Hub repository that ``source`` names, or None where it is a local path: one that exists, or is written as
    a path (absolute, ``./``, ``~``, a file name) or is no valid repository id (huggingface_hub's rules)."""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    text = str(source)
    if Path(text).expanduser().exists() or text.startswith((".", "/", "~")) or "\\" in text \
            or text.endswith(LOCAL_SUFFIXES):
        return None
    m = SOURCE.fullmatch(text)
    if m is None:
        return None
    try:
        validate_repo_id(m["repo"])
    except HFValidationError:
        return None
    return HubSource(m["repo"], revision or m["revision"], m["folder"].strip("/") if m["folder"] else None)


def patterns() -> list[str]:
    """The files of a run that are published and fetched (relative to the run folder): what a reader needs, never
    the training state or the logs."""
    r = RunFolder("")
    return [r.card_path.name, r.config_path.name, r.metrics_path.name, "task_*.safetensors",
            f"{r.samples_path.name}/task_*.png", *RunFolder.PICTURES.values(), r.live_path.name]


# ----------------------------------------------------------------------------------------------- fetching
def fetch(src: HubSource, files: list[str] | None = None, nested: bool = False) -> Path:
    """Download ``files`` (patterns, default ``patterns()``) of the run at ``src`` into huggingface_hub's cache
    (nothing already there is fetched again) and return the run's folder there; ``nested``: also the runs in
    the repository's folders. Raises ``HubError``."""
    from huggingface_hub import snapshot_download

    prefix = f"{src.folder}/" if src.folder else ""
    wanted = files or patterns()
    allow = [prefix + p for p in wanted] + ([prefix + "*/" + p for p in wanted] if nested else [])
    try:
        snapshot = Path(snapshot_download(src.repo_id, revision=src.revision, allow_patterns=allow))
    except Exception as e:   # every failure of the library or the network becomes one line
        raise _error(src, e) from e
    folder = snapshot / src.folder if src.folder else snapshot
    if not folder.is_dir():
        raise HubError(f"{src.repo_id} has no folder {src.folder!r} at revision {src.revision or 'main'}; name a "
                       f"folder it has, or none")
    return folder


def _error(src: HubSource, e: Exception) -> HubError:
    from huggingface_hub import constants
    from huggingface_hub.errors import (GatedRepoError, HfHubHTTPError, IncompleteSnapshotError,
                                        LocalEntryNotFoundError, OfflineModeIsEnabled, RepositoryNotFoundError,
                                        RevisionNotFoundError)

    if isinstance(e, RevisionNotFoundError):
        return HubError(f"the Hub repository {src.repo_id} has no revision {src.revision!r}; name a branch, tag or "
                        f"commit it has")
    if isinstance(e, GatedRepoError):
        return HubError(f"the Hub repository {src.repo_id} is gated; accept its conditions on its page and log in "
                        f"(hf auth login)")
    if isinstance(e, RepositoryNotFoundError):
        return HubError(f"no local file or folder {src}, and no Hub repository {src.repo_id} (or it is private: log "
                        f"in with hf auth login); check the name")
    if isinstance(e, (LocalEntryNotFoundError, OfflineModeIsEnabled)):
        from huggingface_hub.file_download import repo_folder_name

        where = f"huggingface_hub's cache ({constants.HF_HUB_CACHE})"
        if isinstance(e, IncompleteSnapshotError):
            what = f"the copy of {src} in {where} lacks files"
        elif (Path(constants.HF_HUB_CACHE) / repo_folder_name(repo_id=src.repo_id, repo_type="model")).is_dir():
            what = f"revision {src.revision or 'main'!r} of the Hub repository {src.repo_id} is not in {where}"
        else:
            what = f"no local path {src}, and the Hub repository {src.repo_id} is not in {where}"
        why = "HF_HUB_OFFLINE is set" if constants.HF_HUB_OFFLINE else "the Hub cannot be reached"
        return HubError(f"{what}, and {why}: fetch it once with the network (HF_HUB_OFFLINE=0 mergan pull {src})")
    if isinstance(e, HfHubHTTPError):
        status = e.response.status_code if getattr(e, "response", None) is not None else "?"
        return HubError(f"the Hub answered {status} for {src}: {str(e).splitlines()[0][:120]}")
    return HubError(f"cannot fetch {src} from the Hub ({type(e).__name__}: {str(e)[:120]}); check the network")


def local_folder(source, revision: str | None = None, nested: bool = False) -> Path:
    """A run folder (or folder of runs, ``nested``) on disk for ``source``: the path itself, or the Hub
    repository's snapshot in huggingface_hub's cache."""
    src = hub_source(source, revision)
    return Path(source) if src is None else fetch(src, nested=nested)


def task_file(source, task: int | None = None, revision: str | None = None) -> Path:
    """The task file ``source`` names: a task file itself; else a run folder or a Hub repository's run, whose task
    ``task`` (default: its last) is taken; only that run's settings and generators are fetched. A path that is
    none of these is returned as it is (the loader says there is no generator there)."""
    path = Path(source)
    if path.is_file():
        return path
    src = None if path.is_dir() else hub_source(source, revision)
    if src is None and not path.is_dir():
        return path
    generators = [f"task_{task:02d}.safetensors"] if task is not None else ["task_*.safetensors"]
    run = RunFolder(path if src is None else fetch(src, generators))
    files = dict(run.task_files())
    if task is not None and task not in files:
        raise CheckpointError(f"{source} has no generator of task {task} (it has tasks "
                              f"{', '.join(map(str, files)) or 'none'}); pass one of them")
    if not files:
        raise CheckpointError(f"{source} holds no task_XX.safetensors; train it first (mergan train --out ...)")
    return files[task] if task is not None else files[max(files)]


# ----------------------------------------------------------------------------------------------- pushing
def published(run: RunFolder) -> list[Path]:
    """The files of a run a push sends besides its card (each matches one of ``patterns``): its settings and
    evaluation, every task's generator and sample grid, the evaluation's pictures, the live file if exported."""
    files = [run.config_path, run.metrics_path]
    for t, path in run.task_files():
        files += [path, run.sample_path(t)]
    files += [run.picture_path(name) for name in RunFolder.PICTURES] + [run.live_path]
    return [f for f in files if f.is_file()]


@dataclass
class Push:
    """What a push sends (or sent): a commit of ``files`` (path in the repository, bytes) to ``repo_id``."""

    repo_id: str
    revision: str | None
    operations: list                  # huggingface_hub.CommitOperationAdd, the card first
    notes: list[str] = field(default_factory=list)
    url: str | None = None            # the commit's page, once pushed

    @property
    def files(self) -> list[tuple[str, int]]:
        return [(op.path_in_repo, op.upload_info.size) for op in self.operations]

    def text(self) -> str:
        size = sum(n for _, n in self.files) / 1e6
        head = (f"pushed {len(self.files)} files ({size:.1f} MB) to {self.repo_id}: {self.url}" if self.url else
                f"would push {len(self.files)} files ({size:.1f} MB) to {self.repo_id} (revision "
                f"{self.revision or 'main'}); nothing was sent")
        return "\n".join([head, *(f"  {p}  ({n:,} bytes)" for p, n in self.files), *self.notes])


def push(run_dir, repo_id: str, *, path_in_repo: str | None = None, revision: str | None = None,
         private: bool | None = None, dry_run: bool = False, token: str | None = None) -> Push:
    """Push an evaluated run folder to a Hub model repository (created if needed) in one commit: its card (written
    for the repository), ``config.json``, ``metrics.json``, task files, sample grids and pictures (``patterns``;
    never the training state). ``dry_run``: prepare the commit, send nothing. Raises ``HubError`` (a run not
    evaluated since its last task is refused), ``RecordError``."""
    from huggingface_hub import CommitOperationAdd, HfApi
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    from . import __version__
    from .card import build_card, evaluation

    run = RunFolder(run_dir)
    if not run.has_config():
        raise HubError(f"{run.path} is not a run folder (no config.json); push the --out of a training run")
    record = run.read_record()
    metrics, why = evaluation(run, record)
    if metrics is None:
        raise HubError(f"not pushing {run.path}: it {why}; evaluate it first: mergan test --out {run.path}")
    try:
        validate_repo_id(repo_id)
    except HFValidationError as e:
        raise HubError(f"{repo_id!r} is not a Hub repository id ({str(e).splitlines()[0][:100]}); write owner/name")
    prefix = f"{path_in_repo.strip('/')}/" if path_in_repo else ""
    where = HubSource(repo_id, revision, prefix.rstrip("/") or None)   # what load_generator takes to read it back
    card = str(build_card(run, str(where))).encode()
    ops = [CommitOperationAdd(path_in_repo=prefix + run.card_path.name, path_or_fileobj=card)]
    ops += [CommitOperationAdd(path_in_repo=prefix + p.relative_to(run.path).as_posix(), path_or_fileobj=str(p))
            for p in published(run)]
    notes = []
    if record.config.data_source.location is not None:
        notes.append(f"note: config.json, metrics.json and the task files record the data folder this run read, "
                     f"{record.config.data_source.location}; it is published with them")
    plan = Push(repo_id, revision, ops, notes)
    if dry_run:
        return plan
    cfg, info = record.config, record.strategy
    api = HfApi(token=token)
    try:
        api.create_repo(repo_id, private=private, exist_ok=True)
        if revision:
            api.create_branch(repo_id, branch=revision, exist_ok=True)
        commit = api.create_commit(repo_id, operations=list(ops), revision=revision,
                                   commit_message=f"{info.short} on {cfg.dataset}, classes {','.join(cfg.classes)}: "
                                                  f"{len(metrics.tasks)} task(s), evaluated (mergan {__version__})")
    except Exception as e:
        raise _push_error(repo_id, e) from e
    plan.url = commit.commit_url
    return plan


def _push_error(repo_id: str, e: Exception) -> HubError:
    from huggingface_hub import constants
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    if isinstance(e, OfflineModeIsEnabled):
        return HubError(f"cannot push to {repo_id} while HF_HUB_OFFLINE is set; unset it (nothing was sent)")
    if isinstance(e, HfHubHTTPError) and getattr(e, "response", None) is not None \
            and e.response.status_code in (401, 403):
        return HubError(f"the Hub refused the push to {repo_id} ({e.response.status_code}): log in with a token that "
                        f"can write there (hf auth login, or HF_TOKEN)")
    offline = " (HF_HUB_OFFLINE is set)" if constants.HF_HUB_OFFLINE else ""
    first = str(e).splitlines()[0][:120] if str(e) else ""
    return HubError(f"cannot push to {repo_id}{offline}: {type(e).__name__}: {first}")


# ----------------------------------------------------------------------------------------------- commands
def pull(source, revision: str | None = None) -> Path:
    """Fetch a Hub repository's run (or its runs, in folders) into huggingface_hub's cache; returns the folder."""
    src = hub_source(source, revision)
    if src is None:
        raise HubError(f"{source} is a local path, not a Hub repository id; write owner/name[@revision][/folder]")
    return fetch(src, nested=True)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="mergan", description="Runs on the Hugging Face Hub.")
    sub = p.add_subparsers(dest="command", required=True)
    u = sub.add_parser("push", help="push an evaluated run folder to a Hub model repository")
    u.add_argument("run", help="the run folder (train.py's --out), evaluated with mergan test")
    u.add_argument("repo_id", help="owner/name of the Hub model repository (created if it does not exist)")
    u.add_argument("--path-in-repo", default=None, help="a folder in the repository for this run (several runs in "
                                                          "one repository, for the demo)")
    u.add_argument("--revision", default=None, help="the branch to commit to (created if needed; default main)")
    u.add_argument("--private", action="store_true", help="create the repository private")
    u.add_argument("--dry-run", action="store_true", help="list what would be uploaded; send nothing")
    g = sub.add_parser("pull", help="fetch a run (or runs) from the Hub; prints the local folder")
    g.add_argument("source", help="owner/name[@revision][/folder]")
    g.add_argument("--revision", default=None, help="a branch, tag or commit (default main)")
    args = p.parse_args(argv)
    try:
        if args.command == "push":
            print(push(args.run, args.repo_id, path_in_repo=args.path_in_repo, revision=args.revision,
                       private=args.private or None, dry_run=args.dry_run).text())
        else:
            print(pull(args.source, args.revision))
    except (HubError, RecordError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
