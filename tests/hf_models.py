"""Tiny random-weight CLIP-family models of the transformers library, saved to folders as save_pretrained writes
them, with a word-level tokenizer and the family's image processor: real transformers models, small enough for a
CPU test."""

from __future__ import annotations

from pathlib import Path

#: Words the test tokenizer knows (English and Chinese, one token each).
WORDS = ("a photo of the red blue green yellow purple circle star cross heart triangle . 一 张 红 色 蓝 绿 黄 紫 圆 形 "
         "星 十 字 心 三 角 的 照 片").split()  # fmt: skip

_TOWER = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2}


def _tokenizer(folder: Path, pad: str, bos: str, eos: str, unk: str, wrap: bool) -> int:
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab: dict[str, int] = {}
    for word in (pad, unk, bos, eos, *WORDS):  # the specials first (the CLIP one pads with its end token)
        vocab.setdefault(word, len(vocab))
    words = Tokenizer(models.WordLevel(vocab, unk_token=unk))
    words.pre_tokenizer = pre_tokenizers.Whitespace()
    if wrap:
        specials = [(bos, vocab[bos]), (eos, vocab[eos])]
        words.post_processor = processors.TemplateProcessing(single=f"{bos} $A {eos}", special_tokens=specials)
    fast = PreTrainedTokenizerFast(tokenizer_object=words, pad_token=pad, unk_token=unk, bos_token=bos,
                                   eos_token=eos, cls_token=bos, sep_token=eos)  # fmt: skip
    fast.save_pretrained(folder)
    return len(vocab)


def save_tiny(family: str, folder: Path, seed: int = 0) -> Path:
    """A tiny model of ``family`` (clip, chinese_clip, siglip, siglip2, altclip) saved in ``folder``. The CLIP one pads
    with its end token, as OpenAI's CLIP tokenizer does."""
    import torch
    import transformers as tf

    folder.mkdir(parents=True, exist_ok=True)
    vision = {**_TOWER, "image_size": 32, "patch_size": 8}
    torch.manual_seed(seed)
    if family == "clip":
        n = _tokenizer(folder, "[SEP]", "[CLS]", "[SEP]", "[UNK]", wrap=True)  # pad is the end token: id 0
        text = {**_TOWER, "vocab_size": n, "max_position_embeddings": 16, "eos_token_id": 0, "bos_token_id": 2,
                "pad_token_id": 0}  # fmt: skip
        model = tf.CLIPModel(tf.CLIPConfig(text_config=text, vision_config=vision, projection_dim=24))
        processor = tf.CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    elif family == "chinese_clip":
        n = _tokenizer(folder, "[PAD]", "[CLS]", "[SEP]", "[UNK]", wrap=True)
        text = {**_TOWER, "vocab_size": n, "max_position_embeddings": 20, "pad_token_id": 0}
        model = tf.ChineseCLIPModel(tf.ChineseCLIPConfig(text_config=text, vision_config=vision, projection_dim=24))
        processor = tf.ChineseCLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    elif family == "siglip":
        n = _tokenizer(folder, "[PAD]", "[CLS]", "[SEP]", "[UNK]", wrap=False)
        text = {**_TOWER, "vocab_size": n, "max_position_embeddings": 16, "pad_token_id": 0}
        model = tf.SiglipModel(tf.SiglipConfig(text_config=text, vision_config=vision))
        with torch.no_grad():  # a bias that matters, as a trained SigLIP's does
            model.logit_bias.fill_(-1.5)
            model.logit_scale.fill_(2.0)
        processor = tf.SiglipImageProcessor(size={"height": 32, "width": 32})
    elif family == "siglip2":  # NaFlex: images as up to 16 patches of 8 px at their own aspect ratio
        n = _tokenizer(folder, "[PAD]", "[CLS]", "[SEP]", "[UNK]", wrap=False)
        text = {**_TOWER, "vocab_size": n, "max_position_embeddings": 16, "pad_token_id": 0}
        model = tf.Siglip2Model(tf.Siglip2Config(text_config=text, vision_config={**_TOWER, "patch_size": 8,
                                                                                  "num_patches": 16}))  # fmt: skip
        with torch.no_grad():
            model.logit_bias.fill_(-1.5)
        processor = tf.Siglip2ImageProcessor(patch_size=8, max_num_patches=16)
    elif family == "altclip":
        n = _tokenizer(folder, "<pad>", "<s>", "</s>", "<unk>", wrap=True)
        text = {**_TOWER, "vocab_size": n, "max_position_embeddings": 24, "pad_token_id": 0, "project_dim": 24}
        model = tf.AltCLIPModel(tf.AltCLIPConfig(text_config=text, vision_config=vision, projection_dim=24))
        processor = tf.CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    else:
        raise ValueError(family)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder
