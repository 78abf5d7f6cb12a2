# Deployment targets: images, the compose stack, the smoke test, chart and manifest checks, deploy lint.
# Included by the root Makefile, which defines BIN (the virtualenv's bin directory) and $(BIN)/activate.
# The tools come from deploy/scripts/install-ci-tools.sh.

COMPOSE ?= $(shell docker compose version >/dev/null 2>&1 && echo "docker compose" || echo docker-compose)
STACK := $(COMPOSE) -f deploy/compose/compose.yaml
HELM ?= helm
CHART := deploy/helm/lipsync
# The Kubernetes version the chart renders for and the manifests are validated against.
KUBE_VERSION := 1.30.0
# Build the images on another base (CI passes an image bootstrapped from Debian's packages).
BASE_IMAGE ?=
# 1: the smoke test fails when no complete proxy → server trace reaches the OTLP sink.
SMOKE_REQUIRE_TRACE ?= 1
# lipsync-server replicas of `make up`, and of the replica check.
SERVER_REPLICAS ?= 1
REPLICAS ?= 3

.PHONY: images up down smoke replicas helm-lint k8s-validate k8s-manifests deploy-lint

images: ## Build the lipsync-server, proxy and nginx images from this working tree
	$(STACK) build $(if $(BASE_IMAGE),--build-arg BASE_IMAGE=$(BASE_IMAGE)) model-init proxy cert-init

up: ## Start the compose stack (SERVER_REPLICAS=3: three servers): https://localhost:8443, Jaeger :16686
	$(STACK) up -d --build --scale lipsync-server=$(SERVER_REPLICAS)

down: ## Stop the compose stack and remove its containers, network and volumes
	$(STACK) down --volumes --remove-orphans

smoke: $(BIN)/activate ## CI smoke test: build, start, frames through nginx over wss, summary, tear down
	$(BIN)/python deploy/smoke/smoke.py $(if $(filter 1,$(SMOKE_REQUIRE_TRACE)),--require-trace)

replicas: $(BIN)/activate ## Replica check: REPLICAS servers behind one name, one stopped under load, figures
	$(BIN)/python deploy/smoke/replicas.py --replicas $(REPLICAS)

helm-lint: ## helm lint --strict with the default values and with every toggle flipped
	$(HELM) lint --strict $(CHART)
	$(HELM) lint --strict $(CHART) --set server.gpu.enabled=true,ingress.enabled=true,jaeger.enabled=false \
	  --set server.autoscaling.enabled=false,proxy.autoscaling.enabled=false,networkPolicy.enabled=false

k8s-validate: $(BIN)/activate ## Validate deploy/k8s/ against the Kubernetes $(KUBE_VERSION) schema, strictly
	$(BIN)/kubernetes-validate --strict --kubernetes-version $(KUBE_VERSION) deploy/k8s/*.yaml

k8s-manifests: $(BIN)/activate ## Regenerate deploy/k8s/ from the chart's default render
	$(BIN)/python deploy/scripts/render_k8s.py --helm $(HELM)

deploy-lint: $(BIN)/activate helm-lint ## hadolint, shellcheck, yamllint, helm lint, compose config
	$(BIN)/hadolint services/*/Dockerfile deploy/*/Dockerfile
	shellcheck deploy/scripts/*.sh deploy/nginx/*.sh deploy/compose/*.sh loadtests/*.sh
	yamllint --strict -c deploy/.yamllint.yaml deploy
	$(STACK) config --quiet
	$(STACK) -f deploy/compose/compose.ci.yaml config --quiet
