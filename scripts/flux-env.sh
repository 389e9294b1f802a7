# shellcheck shell=bash
# Sourced by scripts/test: make a real Flux available to the tests.
#
# flux-core is not packaged for Debian; the shared folder beside the repository carries a
# build and its installer (../shared/flux/install.sh, which installs into /opt/flux-core).
# use_flux REPO_ROOT: when `flux` is not on PATH, run that installer if it exists, then put
# the installed bin folder first on PATH (exported, so pytest and its subprocesses see it).
# Returns 1, with a warning, when no flux can be had: the live Flux tests then skip (or fail
# with CI=true). JSD_FLUX_PREFIX overrides /opt/flux-core (the tests of this file use it).
use_flux() {
    local repo=$1
    local prefix=${JSD_FLUX_PREFIX:-/opt/flux-core}
    local installer=$repo/../shared/flux/install.sh
    command -v flux >/dev/null && return 0
    if [ ! -x "$prefix/bin/flux" ] && [ -f "$installer" ]; then
        echo "installing Flux: $installer"
        bash "$installer" || echo "warning: $installer failed" >&2
    fi
    if [ -x "$prefix/bin/flux" ]; then
        export PATH="$prefix/bin:$PATH"
        return 0
    fi
    echo "warning: no flux on PATH, in $prefix, or from $installer; the live Flux tests" \
        "will skip (fail with CI=true)" >&2
    return 1
}

# flux_version: the version of the flux on PATH (e.g. 0.88.0), for matching Python bindings.
flux_version() {
    flux version 2>/dev/null | awk '$1 == "libflux-core:" {print $2}'
}
