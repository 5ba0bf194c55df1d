"""A huggingface_hub cache filled as a download leaves it, without a network: blobs named as the Hub names them
(sha256 for LFS files, git's sha1 for the others), snapshot links, refs and the commit's tree listing, each written
with huggingface_hub's own cache helpers, so that its real download code (``snapshot_download``) finds them when
``HF_HUB_OFFLINE=1``. ``scan_cache_dir`` (the library's reader of the cache) checks what was written."""
from __future__ import annotations

import hashlib
from pathlib import Path

from huggingface_hub import scan_cache_dir
from huggingface_hub._tree_cache import TreeCacheEntry, write_tree_cache
from huggingface_hub.file_download import _cache_commit_hash_for_specific_revision, _create_symlink, repo_folder_name
from huggingface_hub.utils.sha import git_hash

LFS = (".safetensors", ".png", ".gif", ".pt")   # what the Hub stores through LFS/Xet (binary files)


def add_commit(cache: Path, repo_id: str, files: dict[str, bytes | Path], refs=("main",)) -> str:
    """Put one commit of a model repository into the cache at ``cache``: ``files`` (path in the repository ->
    content or a file to read), pointed to by the branches or tags ``refs``. Returns the commit's hash."""
    storage = cache / repo_folder_name(repo_id=repo_id, repo_type="model")
    contents = {rel: (src if isinstance(src, bytes) else Path(src).read_bytes()) for rel, src in sorted(files.items())}
    tree = b"".join(rel.encode() + git_hash(data).encode() for rel, data in contents.items())
    commit = hashlib.sha1(tree).hexdigest()   # a commit's id, from its content
    entries = {}
    for rel, data in contents.items():
        lfs = rel.endswith(LFS)
        sha256 = hashlib.sha256(data).hexdigest()
        blob = storage / "blobs" / (sha256 if lfs else git_hash(data))
        blob.parent.mkdir(parents=True, exist_ok=True)
        if not blob.exists():
            blob.write_bytes(data)
        link = storage / "snapshots" / commit / rel
        link.parent.mkdir(parents=True, exist_ok=True)
        _create_symlink(str(blob), str(link))
        entries[rel] = TreeCacheEntry(size=len(data), blob_id=git_hash(data), lfs_sha256=sha256 if lfs else None,
                                      lfs_size=len(data) if lfs else None)
    write_tree_cache(str(storage), commit, entries)
    for ref in refs:
        _cache_commit_hash_for_specific_revision(str(storage), ref, commit)
    repo = next(r for r in scan_cache_dir(cache).repos if r.repo_id == repo_id)
    revision = next(r for r in repo.revisions if r.commit_hash == commit)
    assert {f.file_name for f in revision.files} == {Path(rel).name for rel in contents}, "not a valid cache entry"
    assert set(refs) <= set(revision.refs)
    return commit


def run_files(run_dir: Path, prefix: str = "") -> dict[str, Path]:
    """A run folder's files as ``mergan push`` publishes them (``mergan.hub.published`` and the card)."""
    from mergan.hub import published
    from mergan.runs import RunFolder

    run = RunFolder(run_dir)
    found = [run.card_path] if run.card_path.is_file() else []
    return {prefix + p.relative_to(run.path).as_posix(): p for p in found + published(run)}
