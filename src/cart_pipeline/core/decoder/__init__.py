"""CART identifier decoder: model, identifier trie, constrained beam search, training, checkpoints."""

from .beam_search import constrained_beam_search, ranks_of, score_all_identifiers
from .checkpoint import decoder_from_checkpoint, decoder_to_checkpoint, extend_decoder_checkpoint
from .model import BOS_TOKEN, PAD_TOKEN, CartDecoder, DecoderConfig, TextMemory
from .train import PackedTextStates, TrainConfig, consistency_loss, evaluate_recall, train_decoder
from .trie import IdentifierTrie

__all__ = [
    "BOS_TOKEN",
    "PAD_TOKEN",
    "CartDecoder",
    "DecoderConfig",
    "IdentifierTrie",
    "PackedTextStates",
    "TextMemory",
    "TrainConfig",
    "consistency_loss",
    "constrained_beam_search",
    "decoder_from_checkpoint",
    "decoder_to_checkpoint",
    "evaluate_recall",
    "extend_decoder_checkpoint",
    "ranks_of",
    "score_all_identifiers",
    "train_decoder",
]
