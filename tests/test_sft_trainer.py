"""The weighted SFT loss is TRL's own loss on weighted log-probabilities (TRL's metrics: test_sft_train)."""

from __future__ import annotations

import pytest

pytest.importorskip("transformers")
pytest.importorskip("trl")

import torch  # noqa: E402

from awares_train.sft.config import AwaresSFTConfig  # noqa: E402
from awares_train.sft.runio import load_config  # noqa: E402

TINY = "awares_train/configs/sft_tiny.yaml"


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from awares_train.sft.toydata import write_toy_trajectories

    return write_toy_trajectories(tmp_path_factory.mktemp("traj"), 4, crop_share=0.5)


def _trainer(data, tmp_path, *overrides):
    from awares_tool.backends.hf_processors import load_processor
    from awares_train.sft.data import load_trajectory_dataset
    from awares_train.sft.model import load_model
    from awares_train.sft.train import build_collator
    from awares_train.sft.trainer import WeightedSFTTrainer
    from awares_train.testing.tiny_vlms import tiny_vlm_path

    model_dir = str(tiny_vlm_path("qwen2.5-vl"))
    cfg = load_config(AwaresSFTConfig, TINY, [f"model_name_or_path={model_dir}", f"train_data={data}",
                                              f"output_dir={tmp_path}", "use_peft=false", *overrides])
    processor = load_processor(model_dir)
    collator = build_collator(cfg, processor)
    trainer = WeightedSFTTrainer(model=load_model(model_dir), args=cfg, processing_class=processor,
                                 train_dataset=load_trajectory_dataset(data), data_collator=collator)
    return trainer, collator


def _hand_weighted_mean(model, batch):
    """The weighted token mean from the full logits: sum of -w * log p over labelled tokens / their count."""
    inputs = {k: v for k, v in batch.items() if k not in ("labels", "loss_weights")}
    with torch.no_grad():
        logp = torch.log_softmax(model(**inputs, use_cache=False).logits[:, :-1].float(), dim=-1)
    labels, weights = batch["labels"][:, 1:], batch["loss_weights"][:, 1:]
    mask = labels != -100
    token_logp = logp.gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return float(-(token_logp * weights)[mask].sum() / mask.sum())


def test_weighted_loss_is_trls_loss_on_weighted_tokens(data, tmp_path):
    from awares_train.sft.data import read_records
    from trl import SFTTrainer

    trainer, collator = _trainer(data, tmp_path)
    model = trainer.model.eval()
    batch = collator(read_records(data))
    assert set(batch["loss_weights"].unique().tolist()) == {0.0, 1.0, 5.0}  # a request turn weighted 5x
    with torch.no_grad():
        unweighted = {k: v for k, v in batch.items() if k != "loss_weights"}
        plain = SFTTrainer.compute_loss(trainer, model, unweighted)
        ones = trainer.compute_loss(model, {**batch, "loss_weights": (batch["loss_weights"] > 0).float()})
        weighted = trainer.compute_loss(model, dict(batch))
    assert float(ones) == pytest.approx(float(plain), rel=1e-6)  # all weights 1: TRL's own loss
    assert float(weighted) == pytest.approx(_hand_weighted_mean(model, batch), rel=1e-4)
    assert float(weighted) > float(plain)  # the request tokens count 5 times, normalised by the plain count


@pytest.mark.parametrize("override,why", [("label_smoothing_factor=0.1", "label smoothing"),
                                          ("loss_type=dft", "loss_type='dft'")])
def test_weights_refused_where_trl_loss_cannot_carry_them(data, tmp_path, override, why):
    from awares_train.sft.data import read_records

    trainer, collator = _trainer(data, tmp_path, override)
    with pytest.raises(ValueError, match=f"loss weights .* cannot apply: {why}"):
        trainer.compute_loss(trainer.model, collator(read_records(data)))
