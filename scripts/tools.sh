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
