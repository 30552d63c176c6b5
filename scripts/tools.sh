# Sourced by scripts/test and scripts/demo: installs what the tests need into the project.
#
# .venv/  Python virtualenv with moto[server] (the local AWS endpoint) and awscli, pinned in
#         tests/requirements.txt; reinstalled when that file changes.

ensure_venv() {
    local stamp=.venv/requirements.installed
    if [ -x .venv/bin/moto_server ] && [ -x .venv/bin/aws ] && cmp -s tests/requirements.txt "$stamp"; then
        return
    fi
    echo "==> installing moto[server] and awscli into .venv" >&2
    python3 -m venv .venv
    .venv/bin/pip install --quiet --disable-pip-version-check -r tests/requirements.txt
    cp tests/requirements.txt "$stamp"
}

# tests/node/node_modules/  the original npm kms-env 0.3.0 (and its aws-sdk v2), pinned by
#                           tests/node/package-lock.json; reinstalled when the lock changes.
ensure_node_modules() {
    local stamp=tests/node/node_modules/.package-lock.installed
    if [ -d tests/node/node_modules/kms-env ] && cmp -s tests/node/package-lock.json "$stamp"; then
        return
    fi
    echo "==> installing the original kms-env 0.3.0 into tests/node/node_modules" >&2
    (cd tests/node && npm ci --no-audit --no-fund --loglevel=error)
    cp tests/node/package-lock.json "$stamp"
}
