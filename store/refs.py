"""Repositories, branches and tags.

Branches move only by compare-and-swap; tags are created once and never move. A repository
exists once its marker object does, which is what separates "unknown repo" from "empty repo".
"""

from __future__ import annotations

import orjson

from lockgate.store.backends.base import Backend
from lockgate.store.errors import BranchExistsError, RepoNotFoundError, TagExistsError
from lockgate.store.layout import REPOS_PREFIX, branch_key, branch_prefix, repo_key, tag_key, tag_prefix
from lockgate.store.objects import utc_now_iso
from lockgate.store.uri import check_name


class RefStore:
    def __init__(self, backend: Backend) -> None:
        self._backend = backend

    # -- repositories --------------------------------------------------------------------

    def create_repo(self, repo: str) -> bool:
        """Create the repository if it does not exist; return True if this call created it."""
        check_name("repository", repo)
        marker = orjson.dumps({"name": repo, "created": utc_now_iso()})
        return self._backend.swap_ref(repo_key(repo), marker, None)

    def repo_exists(self, repo: str) -> bool:
        return self._backend.exists(repo_key(repo))

    def repos(self) -> list[str]:
        return sorted(
            key[len(REPOS_PREFIX) :].split("/", 1)[0]
            for key in self._backend.list(REPOS_PREFIX)
            if key.endswith("/repo.json")
        )

    def require_repo(self, repo: str) -> None:
        check_name("repository", repo)
        if not self.repo_exists(repo):
            known = ", ".join(self.repos()) or "none"
            raise RepoNotFoundError(f"unknown repository {repo!r} (repositories in this store: {known})")

    # -- branches ------------------------------------------------------------------------

    def branches(self, repo: str) -> dict[str, str]:
        prefix = branch_prefix(repo)
        return {key[len(prefix) :]: self._backend.get(key).decode() for key in self._backend.list(prefix)}

    def read_branch(self, repo: str, branch: str) -> tuple[str, str] | None:
        """(commit id, version token) or None."""
        found = self._backend.read_ref(branch_key(repo, branch))
        if found is None:
            return None
        value, version = found
        return value.decode().strip(), version

    def swap_branch(self, repo: str, branch: str, commit_id: str, expected_version: str | None) -> bool:
        return self._backend.swap_ref(branch_key(repo, branch), commit_id.encode(), expected_version)

    def create_branch(self, repo: str, branch: str, commit_id: str) -> None:
        """Create ``branch`` at ``commit_id``; exactly one of any number of racing creators wins."""
        check_name("branch", branch)
        if not self._backend.swap_ref(branch_key(repo, branch), commit_id.encode(), None):
            existing = self.read_branch(repo, branch)
            at = existing[0] if existing else "?"
            raise BranchExistsError(f"branch {branch!r} already exists in {repo!r} at {at}")

    def delete_branch(self, repo: str, branch: str) -> None:
        self._backend.delete(branch_key(repo, branch))

    # -- tags ----------------------------------------------------------------------------

    def tags(self, repo: str) -> dict[str, str]:
        prefix = tag_prefix(repo)
        return {key[len(prefix) :]: self._backend.get(key).decode() for key in self._backend.list(prefix)}

    def read_tag(self, repo: str, tag: str) -> str | None:
        found = self._backend.read_ref(tag_key(repo, tag))
        return None if found is None else found[0].decode().strip()

    def create_tag(self, repo: str, tag: str, commit_id: str) -> None:
        check_name("tag", tag)
        if not self._backend.swap_ref(tag_key(repo, tag), commit_id.encode(), None):
            existing = self.read_tag(repo, tag)
            raise TagExistsError(f"tag {tag!r} already exists in {repo!r} at {existing}; tags never move")
