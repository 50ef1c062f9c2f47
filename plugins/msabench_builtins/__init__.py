"""msabench's built-in plugins.

Registered through the same hooks and the same entry-point group (``msabench``) as any
third-party package. Every component is registered lazily ("module:Class") so that listing
components never imports torch. None passes ``summary=``: the one-line description is the
class's ``meta`` summary (a dataset's ``title``), which ``msabench list`` reads from the source.
"""

from msabench import hookimpl

_P = "msabench_builtins"

MOSI_METRICS = {
    "mosi-acc2-has0": "Acc2Has0", "mosi-f1-has0": "F1Has0",
    "mosi-acc2-non0": "Acc2Non0", "mosi-f1-non0": "F1Non0",
    "mosi-acc7": "Acc7", "mosi-acc5": "Acc5", "mosi-acc3": "Acc3",
    "mosi-mae": "MAE", "mosi-corr": "Corr",
}
SIMS_METRICS = {
    "sims-acc2": "Acc2", "sims-acc3": "Acc3", "sims-acc5": "Acc5", "sims-f1": "F1",
    "sims-acc2-weak": "Acc2Weak", "sims-mae": "MAE", "sims-corr": "Corr", "sims-r2": "R2",
}


@hookimpl
def register_metrics(register):
    for name, cls in MOSI_METRICS.items():
        register(f"{_P}.metrics.mosi:{cls}", name=name)
    for name, cls in SIMS_METRICS.items():
        register(f"{_P}.metrics.sims:{cls}", name=name)


@hookimpl
def register_datasets(register):
    register(f"{_P}.datasets.synthetic:SyntheticMosi", name="synthetic-mosi")
    register(f"{_P}.datasets.synthetic_sims2:SyntheticSims2", name="synthetic-sims2")
    register(f"{_P}.datasets.synthetic_mosei:SyntheticMosei", name="synthetic-mosei")
    register(f"{_P}.datasets.mosi:Mosi", name="mosi")
    register(f"{_P}.datasets.mosi:Mosei", name="mosei")
    register(f"{_P}.datasets.sims:ChSims", name="chsims")
    register(f"{_P}.datasets.sims:ChSims2", name="chsims2")


@hookimpl
def register_fusions(register):
    register(f"{_P}.fusions.concat:ConcatFusion", name="concat")
    register(f"{_P}.fusions.tfn:TensorFusion", name="tfn")
    register(f"{_P}.fusions.lmf:LowRankFusion", name="lmf")
    register(f"{_P}.fusions.mult:MulTFusion", name="mult")
    register(f"{_P}.fusions.mag:MAGFusion", name="mag")


@hookimpl
def register_methods(register):
    register(f"{_P}.methods.sf:SF", name="sf")
    register(f"{_P}.methods.tfn:TFN", name="tfn")
    register(f"{_P}.methods.lmf:LMF", name="lmf")
    register(f"{_P}.methods.ef_lstm:EFLSTM", name="ef-lstm")
    register(f"{_P}.methods.mult:MulT", name="mult")
    register(f"{_P}.methods.mag_bert:MAGBert", name="mag-bert")
    register(f"{_P}.methods.transformer:TransformerClassifier", name="transformer")
    register(f"{_P}.methods.dec_semi:DecSemi", name="dec-semi")
    register(f"{_P}.methods.boost_mtl:BoostMTL", name="boost-mtl")
    register(f"{_P}.methods.cormult:CorMulT", name="cormult")


@hookimpl
def register_pretrainers(register):
    register(f"{_P}.pretrainers.dec:DEC", name="dec")
    register(f"{_P}.pretrainers.unimodal:UnimodalFinetune", name="unimodal")
    register(f"{_P}.pretrainers.mce:MCEPretrainer", name="mce")


@hookimpl
def register_extractors(register):
    register(f"{_P}.extractors.hf_text:HFTextExtractor", name="hf-text")
    register(f"{_P}.extractors.hf_audio:HFAudioExtractor", name="hf-audio")
    register(f"{_P}.extractors.hf_video:HFVideoExtractor", name="hf-video")


@hookimpl
def register_trackers(register):
    register(f"{_P}.trackers.mlflow:MLflowTracker", name="mlflow")
