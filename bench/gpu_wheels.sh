#!/usr/bin/env bash
# Fetches, for the lent GPU machine (Python 3.12, PyTorch installed, no network), the wheels of what
# memfront and yolov5 import that its image lacks (the list: bench/gpu_check.py's imports less the
# image's packages, in .library/device/KINDS.md), into bench/gpu-wheels/ (ignored by git; carry it).
# There: python3 -m pip install --no-index --no-deps bench/gpu-wheels/*.whl && python3 -m pip install
# --no-index --no-deps --no-build-isolation -e . && python3 bench/gpu_check.py "$OUT"
# Not carried: huggingface-hub (the image's 1.33 is newer than yolov5 asks for; memfront's trials never
# call the hub) and polars (ultralytics imports it when it saves a checkpoint; gpu_check runs yolov5 only).
set -euo pipefail
cd "$(dirname "$0")"
rm -rf gpu-wheels && mkdir gpu-wheels
packages=(
    yolov5==7.0.14 "ultralytics==8.4.*" ultralytics-thop thop "setuptools<81"
    "optuna>=5,<6" alembic sqlalchemy mako colorlog
    pydantic pydantic-core annotated-types typing-inspection plotly
    roboflow requests-toolbelt filetype python-dotenv pillow-avif-plugin
    boto3 botocore s3transfer jmespath platformdirs
)
python3 -m pip download --quiet --no-deps --dest gpu-wheels --only-binary=:all: \
    --python-version 3.12 --implementation cp --abi cp312 --abi abi3 --abi none \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    --platform any "${packages[@]}"
du -sh gpu-wheels
