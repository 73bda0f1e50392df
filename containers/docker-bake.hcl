# Five images from one Dockerfile: `docker buildx bake -f containers/docker-bake.hcl` (group "all"),
# or name targets: `docker buildx bake -f containers/docker-bake.hcl live ademvl`.
# ci/images.sh sets the *_VERSION variables from each package's pyproject.toml, and REVISION,
# SOURCE, CREATED from git; tests/test_containers.py keeps the defaults below equal to the packages.
# Run from the repository root (the build context).

variable "REGISTRY" {
  default = "vlrepro"
}
variable "BASE_IMAGE" {
  # PyPI torch 2.10.0 is a CUDA 12.8 build; Ubuntu 22.04's python3 is 3.10 (requires-python <3.12)
  default = "nvidia/cuda:12.8.1-base-ubuntu22.04"
}
variable "REVISION" {
  default = "unknown"
}
variable "SOURCE" {
  default = "https://github.com/vlrepro/vlrepro"
}
variable "CREATED" {
  default = ""
}
# extra tag for every image (e.g. "latest", "sha-1234567"); empty: only the version tag
variable "EXTRA_TAG" {
  default = ""
}
variable "LIVE_VERSION" {
  default = "0.1.0"
}
variable "LEVERLM_VERSION" {
  default = "0.1.0"
}
variable "LCL_VERSION" {
  default = "0.1.0"
}
variable "SOPHON_VERSION" {
  default = "0.1.0"
}
variable "ADEMVL_VERSION" {
  default = "0.1.0"
}

function "tags" {
  params = [paper, version]
  result = compact(["${REGISTRY}/vlrepro-${paper}:${version}", EXTRA_TAG != "" ? "${REGISTRY}/vlrepro-${paper}:${EXTRA_TAG}" : ""])
}

group "default" {
  targets = ["all"]
}

group "all" {
  targets = ["live", "leverlm", "lcl", "sophon", "ademvl"]
}

target "_common" {
  context    = "."
  dockerfile = "containers/Dockerfile"
  platforms  = ["linux/amd64"]
  args = {
    BASE_IMAGE = BASE_IMAGE
    REVISION   = REVISION
    SOURCE     = SOURCE
    CREATED    = CREATED
  }
}

target "live" {
  inherits = ["_common"]
  args = {
    PACKAGE              = "live"
    VERSION              = LIVE_VERSION
    TRANSFORMERS_VERSION = "4.45.2"
    ARXIV_ID             = "2406.13185"
  }
  tags = tags("live", LIVE_VERSION)
}

target "leverlm" {
  inherits = ["_common"]
  args = {
    PACKAGE              = "leverlm"
    VERSION              = LEVERLM_VERSION
    TRANSFORMERS_VERSION = "4.33.3"
    ARXIV_ID             = "2312.10104"
  }
  tags = tags("leverlm", LEVERLM_VERSION)
}

target "lcl" {
  inherits = ["_common"]
  args = {
    PACKAGE              = "lcl"
    VERSION              = LCL_VERSION
    TRANSFORMERS_VERSION = "4.31.0"
    ARXIV_ID             = "2308.07891"
  }
  tags = tags("lcl", LCL_VERSION)
}

target "sophon" {
  inherits = ["_common"]
  args = {
    PACKAGE              = "sophon"
    VERSION              = SOPHON_VERSION
    TRANSFORMERS_VERSION = "4.37.2"
    ARXIV_ID             = "2403.11299"
  }
  tags = tags("sophon", SOPHON_VERSION)
}

target "ademvl" {
  inherits = ["_common"]
  args = {
    PACKAGE              = "ademvl"
    VERSION              = ADEMVL_VERSION
    TRANSFORMERS_VERSION = "4.46.3"
    ARXIV_ID             = "2410.17779"
  }
  tags = tags("ademvl", ADEMVL_VERSION)
}
