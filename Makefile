# DeepModel-Caffe. `make help` lists the targets. The README's two commands: `make train`, `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# run inside the venv: its bin first on PATH (the `caffe` command), quiet Caffe logging
RUN := PATH="$(CURDIR)/$(VENV)/bin:$$PATH" GLOG_minloglevel=$${GLOG_minloglevel:-1}

NYU_ROOT ?=
ICVL_ROOT ?=
DATASET ?= nyu
RESULTS ?= results

.PHONY: help setup venv caffe extras onnx test detect-net lmdb-nyu lmdb-icvl nets train train-real lmdb-prior lmdb-default-mix lmdb-mix evaluate table1 demo bench fit icvl-hand pose-prior docs clean refine-net

help: ## list the targets
	@echo "DeepModel-Caffe targets (the README's two commands: make train, make test):"
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'
	@echo "Variables: NYU_ROOT=/path/to/nyu (real data; default: the embedded synthetic set), ICVL_ROOT (likewise), DATASET=nyu|icvl (train, table1), CENTERS=detected (lmdb-nyu), RESULTS=$(RESULTS)"

setup: caffe ## everything needed before work: apt packages, .venv, Caffe build (cached)

venv: $(VENV)/.requirements.stamp ## .venv with the pinned Python requirements and this project (editable)

$(VENV)/.requirements.stamp: requirements.txt pyproject.toml
	@test -x $(PY) || { echo "[venv] creating $(VENV)"; $(PYTHON) -m venv $(VENV); }
	@echo "[venv] installing requirements.txt and the project (pip install -e .)"
	@$(PY) -m pip install -q --disable-pip-version-check -r requirements.txt
	@$(PY) -m pip install -q --disable-pip-version-check --no-deps -e .
	@touch $@

caffe: venv ## build (first time, ~4 min) or link (cached) CPU Caffe with Python layers
	@bash scripts/setup_caffe.sh
	@mkdir -p $(RESULTS)/snapshots  # the solver's snapshot folder: Caffe will not create it

test: caffe extras ## run all tests
	@$(RUN) $(PY) -m pytest -q

extras: $(VENV)/.extras.stamp ## the optional extras the tests use (pip install -e '.[realsense,onnx]')

$(VENV)/.extras.stamp: $(VENV)/.requirements.stamp pyproject.toml
	@echo "[venv] installing the optional extras: pip install -e '.[realsense,onnx]'"
	@$(PY) -m pip install -q --disable-pip-version-check -e '.[realsense,onnx]'
	@touch $@

onnx: caffe extras ## export the shipped nets to ONNX beside their weights (models/*/*.onnx), each checked against Caffe
	@$(RUN) $(PY) tools/export_onnx.py --shipped

lmdb-nyu: caffe ## NYU LMDBs from NYU_ROOT, else from the synthetic NYU-format set (generated once); CENTERS=detected: test LMDBs at label-free centres
	@$(RUN) $(PY) tools/make_lmdb.py nyu $(if $(NYU_ROOT),--root "$(NYU_ROOT)") \
	  $(if $(filter detected,$(CENTERS)),--centers detected --splits test)

lmdb-icvl: caffe ## ICVL LMDBs from ICVL_ROOT, else from the synthetic ICVL-format set (generated once)
	@$(RUN) $(PY) tools/make_lmdb.py icvl $(if $(ICVL_ROOT),--root "$(ICVL_ROOT)")

nets: caffe ## regenerate prototxt/ from tools/make_nets.py
	@$(RUN) $(PY) tools/make_nets.py

# make train's training set: DATASET=icvl or NYU_ROOT given: that dataset's LMDBs as they are (NYU_ROOT:
# the released solver's schedule, 100 epochs, no time cap: hours on a CPU, docs/usage.md);
# otherwise the embedded synthetic set mixed 5:1 with the prior-pose world, then 1200 iterations
# at a tenth of the learning rate on the 1:1 mix, from those weights (docs/experiments/realism.md)
ifeq ($(DATASET),icvl)
TRAIN_DATA := lmdb-icvl
TRAIN_ARGS := --dataset icvl --results $(RESULTS)/icvl
else ifneq ($(NYU_ROOT),)
TRAIN_DATA := lmdb-nyu
TRAIN_ARGS := --dataset nyu --results $(RESULTS) --variant hand_up --schedule paper
else
TRAIN_DATA := lmdb-default-mix lmdb-mix
TRAIN_ARGS := --dataset nyu --results $(RESULTS)/base --variant hand_up --lmdb-dir data/lmdb_mix51 --no-eval
TUNE_ARGS := --dataset nyu --results $(RESULTS) --variant hand_up --lmdb-dir data/lmdb_mix \
  --weights $(RESULTS)/base/deepmodel_hand_up.caffemodel --iters 1200 --base-lr 0.0003
endif

train: caffe $(TRAIN_DATA) ## the main job: data, train the paper's net on crops turned hand-up (variant hand_up) on the synthetic set mixed 5:1 with prior-pose hands, then fine-tune it on the 1:1 mix (NYU_ROOT: on NYU; DATASET=icvl: the paper's net on ICVL), evaluate, plot (results/; DATASET=icvl: results/icvl)
	@$(RUN) $(PY) tools/train.py $(TRAIN_ARGS) --resume
	$(if $(TUNE_ARGS),@$(RUN) $(PY) tools/train.py $(TUNE_ARGS) --resume)

lmdb-prior: caffe ## the prior-pose world: ICVL prior poses, randomised body, bent wrist, both faces (generated once) -> data/lmdb_real (two augmented copies)
	@$(RUN) $(PY) tools/synthetic.py --out data/synthetic_real --wrist --rot-deg 35 180 60 --vary-body --poses prior
	@$(RUN) $(PY) tools/make_lmdb.py nyu --root data/synthetic_real --out data/lmdb_real --augment 2

lmdb-default-mix: lmdb-nyu lmdb-prior ## make train's set: the 12000 synthetic training crops + 2400 random records of the prior-pose world -> data/lmdb_mix51
	@$(RUN) $(PY) tools/merge_lmdb.py --out data/lmdb_mix51 --train data/lmdb data/lmdb_real:2400

lmdb-mix: lmdb-nyu lmdb-prior ## the 1:1 mix: the 12000 synthetic training crops + 12000 random records of the prior-pose world -> data/lmdb_mix
	@$(RUN) $(PY) tools/merge_lmdb.py --out data/lmdb_mix --train data/lmdb data/lmdb_real:12000

train-real: caffe lmdb-mix ## the plain net for real depth (docs/experiments/realism.md): the paper's net on the 1:1 mix -> results/real, real crops scored with and without the depth fit (~25 min)
	@$(RUN) $(PY) tools/train.py --results $(RESULTS)/real --lmdb-dir data/lmdb_mix --max-minutes 40 --resume

table1: caffe lmdb-$(DATASET) ## train the four variants of the paper's Table 1 -> docs/table1.md (DATASET=icvl: docs/table1_icvl.md)
	@$(RUN) $(PY) tools/table1.py --dataset $(DATASET) --results $(RESULTS)/table1$(if $(filter icvl,$(DATASET)),_icvl)

demo: caffe ## the newest net trained in results/ (else the shipped models/real/, make train-real's net) on the five real NYU crops -> results/demo
	@$(RUN) $(PY) tools/demo.py --out $(RESULTS)/demo

detect-net: caffe ## train and score the hand detector for scenes with a body -> models/detect/ (about 15 min, once)
	@$(RUN) $(PY) tools/train_detect.py

refine-net: caffe ## train the hand-centre refinement net -> models/refine/ (4-7 min, once)
	@$(RUN) $(PY) tools/train_refine.py

bench: caffe extras ## speed figures: model layer, training iteration, deploy net, raw frames, ONNX Runtime vs Caffe, data layers
	@$(RUN) $(PY) tools/bench.py

icvl-hand: caffe ## ICVL joints on the model (by fit error) and the ICVL-calibrated hand -> docs/icvl.md, models/icvl16.json
	@$(RUN) $(PY) tools/icvl_hand.py --markdown docs/icvl.md --write-model --quiet

pose-prior: caffe ## fit the NYU hand to the real ICVL test labels -> data/prior/icvl_poses.npz (poses for the synthetic sets)
	@$(RUN) $(PY) tools/fit_pose.py --dataset icvl data/reference/icvl/icvl_test_groundtruth_label.txt.xz --out $(RESULTS)/fit/icvl_fits.npz --quiet
	@$(RUN) $(PY) tools/pose_prior.py $(RESULTS)/fit/icvl_fits.npz

fit: caffe ## fit the hand model to the 8252 NYU test labels -> results/fit
	@$(RUN) $(PY) tools/fit_pose.py data/reference/nyu/nyu_test_groundtruth_label.txt.xz --out $(RESULTS)/fit/fits.npz

docs: caffe ## regenerate the figures of docs/
	@$(RUN) $(PY) tools/draw_rest_pose.py --out docs/img/rest_pose.png --markdown docs/hand-model.md
	@for d in nyu icvl; do \
	  $(RUN) $(PY) tools/test_net.py --predictions data/reference/$$d/predictions/*.txt.xz --sort \
	    --out $(RESULTS)/published_$$d > /dev/null && \
	  cp $(RESULTS)/published_$$d/threshold.png docs/img/published_$${d}_curves.png && \
	  cp $(RESULTS)/published_$$d/per_joint.png docs/img/published_$${d}_per_joint.png || exit 1; \
	done; echo "wrote docs/img/published_{nyu,icvl}_{curves,per_joint}.png"

clean: ## remove results and generated data (keeps .venv and the Caffe cache)
	rm -rf $(RESULTS) data/lmdb data/synthetic data/synthetic_real data/lmdb_real data/lmdb_mix51 data/lmdb_mix
