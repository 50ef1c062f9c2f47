"""msabench's built-in plugins.

Registered through the same hooks and the same entry-point group (``msabench``) as any
third-party package. Every component is registered lazily ("module:Class") so that listing
components never imports torch.
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
        register(f"{_P}.metrics.mosi:{cls}", name=name,
                 summary=f"{name[5:]} under the CMU-MOSI/MOSEI convention (labels in [-3, 3])")
    for name, cls in SIMS_METRICS.items():
        register(f"{_P}.metrics.sims:{cls}", name=name,
                 summary=f"{name[5:]} under the CH-SIMS convention (labels clipped to [-1, 1])")


@hookimpl
def register_datasets(register):
    register(f"{_P}.datasets.synthetic:SyntheticMosi", name="synthetic-mosi",
             summary="SYNTHETIC data in CMU-MOSI shapes with a planted signal (not a benchmark)")
    register(f"{_P}.datasets.synthetic_sims2:SyntheticSims2", name="synthetic-sims2",
             summary="SYNTHETIC CH-SIMS v2 shapes, unimodal labels, transcripts, generated media")
    register(f"{_P}.datasets.mosi:Mosi", name="mosi",
             summary="CMU-MOSI: MMSA/MulT/MAG-BERT pickles, SDK .csd, msabench .npz archive")
    register(f"{_P}.datasets.mosi:Mosei", name="mosei",
             summary="CMU-MOSEI: MMSA/MulT/MAG-BERT pickles, SDK .csd, msabench .npz archive")
    register(f"{_P}.datasets.sims:ChSims", name="chsims",
             summary="CH-SIMS (v1): MMSA pickle or raw label.csv + videos")
    register(f"{_P}.datasets.sims:ChSims2", name="chsims2",
             summary="CH-SIMS v2.0 (supervised): MMSA pickle or raw label.csv + videos")


@hookimpl
def register_fusions(register):
    register(f"{_P}.fusions.concat:ConcatFusion", name="concat",
             summary="masked mean-pool each modality, concatenate (shallow/late fusion)")
    register(f"{_P}.fusions.tfn:TensorFusion", name="tfn",
             summary="TFN tensor fusion: 3-way outer product of subnet outputs with appended 1")
    register(f"{_P}.fusions.lmf:LowRankFusion", name="lmf",
             summary="LMF low-rank multimodal fusion with modality-specific factors")
    register(f"{_P}.fusions.mult:MulTFusion", name="mult",
             summary="MulT: six crossmodal transformers + self-attention memories")
    register(f"{_P}.fusions.mag:MAGFusion", name="mag",
             summary="multimodal adaptation gate inside a BERT-family encoder")


@hookimpl
def register_methods(register):
    register(f"{_P}.methods.sf:SF", name="sf",
             summary="SF baseline: pooled features per modality, fusion, MLP regressor")
    register(f"{_P}.methods.tfn:TFN", name="tfn",
             summary="TFN (Zadeh et al. 2017), MMSA defaults")
    register(f"{_P}.methods.lmf:LMF", name="lmf",
             summary="LMF (Liu et al. 2018), MMSA defaults")
    register(f"{_P}.methods.ef_lstm:EFLSTM", name="ef-lstm",
             summary="EF-LSTM early-fusion LSTM, MMSA defaults")
    register(f"{_P}.methods.mult:MulT", name="mult",
             summary="MulT (Tsai et al. 2019)")
    register(f"{_P}.methods.mag_bert:MAGBert", name="mag-bert",
             summary="MAG-BERT (Rahman et al. 2020) on a BERT-family encoder")
    register(f"{_P}.methods.transformer:TransformerClassifier", name="transformer",
             summary="dec-semi paper's transformer classifier (no pretraining), binary BCE")
    register(f"{_P}.methods.dec_semi:DecSemi", name="dec-semi",
             summary="transformer classifier with semi-supervised DEC pretraining")


@hookimpl
def register_pretrainers(register):
    register(f"{_P}.pretrainers.dec:DEC", name="dec",
             summary="semi-supervised Deep Embedded Clustering pretraining of a method's encoder")


@hookimpl
def register_extractors(register):
    register(f"{_P}.extractors.hf_text:HFTextExtractor", name="hf-text",
             summary="transformers text encoder (local dir or hub name) -> token or pooled features")
    register(f"{_P}.extractors.hf_audio:HFAudioExtractor", name="hf-audio",
             summary="transformers speech encoder (HuBERT/wav2vec 2.0; local dir or hub name) "
                     "-> mean-pooled or frame features")
    register(f"{_P}.extractors.hf_video:HFVideoExtractor", name="hf-video",
             summary="transformers video backbone (VideoMAE; local dir or hub name) -> features "
                     "pooled over space then time")
