"""Where things live inside a supported model: blocks, attention projections, MLP projections, norms.

Anatomy stores *names*, not module objects, and resolves them on access, so it stays true after a
method swaps a projection for its own module (LoRA, SMT, SPSFT).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from workbench.errors import ConfigError

# model_type -> family. LLaMA-family layout: model.layers.N.self_attn.{q,k,v,o}_proj, mlp.{gate,up,down}_proj.
LLAMA_FAMILY = ("llama", "qwen2", "mistral", "gemma3_text")
SUPPORTED_MODEL_TYPES = LLAMA_FAMILY

ATTENTION_LINEARS = ("q_proj", "k_proj", "v_proj", "o_proj")
MLP_LINEARS = ("gate_proj", "up_proj", "down_proj")
LINEAR_NAMES = ATTENTION_LINEARS + MLP_LINEARS


@dataclass(frozen=True)
class BlockAnatomy:
    """One transformer block (decoder layer)."""

    index: int
    path: str  # qualified name of the block inside the causal LM, e.g. "model.layers.3"
    module: nn.Module  # the decoder layer

    @property
    def attention(self) -> nn.Module:
        return self.module.self_attn

    @property
    def mlp(self) -> nn.Module:
        return self.module.mlp

    @property
    def input_norm(self) -> nn.Module:
        return self.module.input_layernorm

    @property
    def post_attention_norm(self) -> nn.Module:
        return self.module.post_attention_layernorm

    def parent_of(self, linear: str) -> nn.Module:
        """The module holding projection `linear` (self_attn for q/k/v/o, mlp for gate/up/down)."""
        if linear in ATTENTION_LINEARS:
            return self.attention
        if linear in MLP_LINEARS:
            return self.mlp
        raise ConfigError(f"unknown projection {linear!r}; accepted: {', '.join(LINEAR_NAMES)}")

    def linear(self, name: str) -> nn.Module:
        """The current module at projection `name` (an nn.Linear, or a method's replacement)."""
        return getattr(self.parent_of(name), name)

    def linear_path(self, name: str) -> str:
        """Qualified name of projection `name`, e.g. "model.layers.3.self_attn.q_proj"."""
        sub = "self_attn" if name in ATTENTION_LINEARS else "mlp"
        return f"{self.path}.{sub}.{name}"


@dataclass(frozen=True)
class ModelAnatomy:
    """The parts of a causal LM that methods and recorders need."""

    family: str  # "llama" for the whole LLaMA-family layout
    model_type: str  # config.model_type, e.g. "llama", "qwen2"
    model: nn.Module  # the causal LM (has .model and .lm_head)
    blocks: tuple[BlockAnatomy, ...]
    num_heads: int  # H, query heads
    num_kv_heads: int  # Hkv, key/value heads (grouped-query attention when < H)
    head_dim: int
    hidden_size: int  # d
    intermediate_size: int  # MLP width

    @property
    def decoder(self) -> nn.Module:
        """The decoder stack (embeddings, blocks, final norm, rotary embedding)."""
        return self.model.model

    @property
    def lm_head(self) -> nn.Module:
        return self.model.lm_head

    @property
    def num_blocks(self) -> int:
        return len(self.blocks)

    def linear_shapes(self) -> dict[str, tuple[int, int]]:
        """(out_features, in_features) of each projection name (identical in every block)."""
        d, hd = self.hidden_size, self.head_dim
        return {
            "q_proj": (self.num_heads * hd, d),
            "k_proj": (self.num_kv_heads * hd, d),
            "v_proj": (self.num_kv_heads * hd, d),
            "o_proj": (d, self.num_heads * hd),
            "gate_proj": (self.intermediate_size, d),
            "up_proj": (self.intermediate_size, d),
            "down_proj": (d, self.intermediate_size),
        }


def anatomy_of(model: nn.Module) -> ModelAnatomy:
    """Describe a causal LM; an unsupported architecture is one ConfigError naming the supported ones."""
    config = getattr(model, "config", None)
    model_type = getattr(config, "model_type", type(model).__name__)
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise ConfigError(
            f"unsupported architecture {model_type!r}: the workbench knows the LLaMA-family layout "
            f"(model types {', '.join(SUPPORTED_MODEL_TYPES)})"
        )
    decoder = getattr(model, "model", None)
    layers = getattr(decoder, "layers", None)
    if layers is None or not hasattr(model, "lm_head"):
        raise ConfigError(
            f"model of type {model_type!r} lacks model.layers / lm_head: pass a causal LM "
            "(AutoModelForCausalLM), not a bare encoder"
        )
    num_heads = config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // num_heads
    blocks = tuple(BlockAnatomy(i, f"model.layers.{i}", layer) for i, layer in enumerate(layers))
    return ModelAnatomy(
        family="llama",
        model_type=model_type,
        model=model,
        blocks=blocks,
        num_heads=num_heads,
        num_kv_heads=getattr(config, "num_key_value_heads", None) or num_heads,
        head_dim=head_dim,
        hidden_size=config.hidden_size,
        intermediate_size=config.intermediate_size,
    )
