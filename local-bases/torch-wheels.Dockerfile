# The CPU torch wheel as an image, for services/Dockerfile's TORCH_WHEELS build arg
# (scripts/compose-check.sh): where no index serves the CPU build, pip installs it from here.
# Build context: a folder holding the wheel alone.
FROM scratch
COPY *.whl /
