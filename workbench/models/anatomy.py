"""Where things live inside a causal LM, and how much of the LLaMA-family layout it has.

The layout is read from the model's modules, never from its `model_type`. Three features, each either
present in every decoder layer or reported missing (`ModelAnatomy.missing`, one line each):

- `PROJECTIONS`: decoder layers (the ModuleList of the config's hidden layers inside the base model) each
  with self_attn.{q,k,v,o}_proj and mlp.{gate,up,down}_proj Linear layers of the shapes the config gives;
- `NORMS`: the layer's norms in a known arrangement (`BLOCK_STYLES`: pre-norm as LLaMA, Qwen2/3, Mistral,
  Granite; sandwich as Gemma 2/3; post-norm as OLMo 2), and any q/k norm of the attention over one head
  (Qwen3, Gemma 3) or over all heads (OLMo 2);
- `ROTARY`: rotary attention: the layers take `position_embeddings` (cos, sin) from the decoder's rotary
  embedding.

Any causal LM gets an anatomy (GPT-2: no blocks, every feature missing); methods declare the features
they need (`Method.requires`) and `ModelAnatomy.require` is the one error naming what the model lacks.

Anatomy stores *names*, not module objects, and resolves them on access, so it stays true after a
method swaps a projection for its own module (LoRA, SMT, SPSFT).
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from torch import nn

from workbench.errors import ConfigError

ATTENTION_LINEARS = ("q_proj", "k_proj", "v_proj", "o_proj")
MLP_LINEARS = ("gate_proj", "up_proj", "down_proj")
LINEAR_NAMES = ATTENTION_LINEARS + MLP_LINEARS

# the features of the LLaMA-family layout (see the module docstring)
PROJECTIONS = "projections"
NORMS = "norms"
ROTARY = "rotary"
LLAMA_LAYOUT = (PROJECTIONS, NORMS, ROTARY)

# block style -> the layer's norms, by attribute name, in the order the block applies them
PRE_NORM, SANDWICH, POST_NORM = "pre_norm", "sandwich", "post_norm"
BLOCK_STYLES = {
    # h + a(in(h)), then h + mlp(post_attention(h))                       LLaMA, Qwen2/3, Mistral, Granite
    PRE_NORM: ("input_layernorm", "post_attention_layernorm"),
    # h + post_attention(a(in(h))), then h + post_feedforward(mlp(pre_feedforward(h)))        Gemma 2/3
    SANDWICH: (
        "input_layernorm",
        "post_attention_layernorm",
        "pre_feedforward_layernorm",
        "post_feedforward_layernorm",
    ),
    # h + post_attention(a(h)), then h + post_feedforward(mlp(h))                                 OLMo 2
    POST_NORM: ("post_attention_layernorm", "post_feedforward_layernorm"),
}
HEAD, FULL = "head", "full"  # a q/k norm over each head's hd features, or over all heads' features

_WANTED = {  # each feature in a few words, for the error naming what a model lacks
    PROJECTIONS: "self_attn.{q,k,v,o}_proj and mlp.{gate,up,down}_proj Linear layers in every decoder layer",
    NORMS: "the LLaMA block norms (input_layernorm and post_attention_layernorm; or Gemma's sandwich or "
    "OLMo 2's post-norms)",
    ROTARY: "rotary attention (layers taking position_embeddings from the decoder)",
}


@dataclass(frozen=True)
class BlockAnatomy:
    """One transformer block (decoder layer) with the LLaMA projections."""

    index: int
    path: str  # qualified name of the block inside the causal LM, e.g. "model.layers.3"
    module: nn.Module  # the decoder layer

    @property
    def attention(self) -> nn.Module:
        return self.module.self_attn

    @property
    def mlp(self) -> nn.Module:
        return self.module.mlp

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
    """The parts of a causal LM that methods and recorders need, and what of the LLaMA layout it lacks."""

    family: str  # "llama" when the model has the whole LLaMA-family layout, else "other"
    model_type: str  # config.model_type, e.g. "llama", "qwen3", "gpt2"
    model: nn.Module  # the causal LM
    blocks: tuple[BlockAnatomy, ...]  # the decoder layers when they have the LLaMA projections, else ()
    num_heads: int  # H, query heads
    num_kv_heads: int  # Hkv, key/value heads (grouped-query attention when < H)
    head_dim: int
    hidden_size: int  # d
    intermediate_size: int  # MLP width (0 where the config does not say)
    decoder_path: str = "model"  # the decoder stack inside the causal LM ("transformer" in GPT-2)
    layers_path: str | None = "model.layers"  # its decoder layers ("transformer.h"); None if none found
    num_layers: int = 0  # decoder layers found (with or without the LLaMA projections)
    block_style: str | None = PRE_NORM  # a BLOCK_STYLES key when NORMS is present
    qk_norm: str | None = None  # HEAD, FULL or None: the attention's q/k norm (with NORMS present)
    missing: Mapping[str, str] = field(default_factory=dict)  # layout feature -> what the model lacks

    @property
    def decoder(self) -> nn.Module:
        """The decoder stack (embeddings, blocks, final norm, rotary embedding)."""
        return self.model.get_submodule(self.decoder_path)

    @property
    def lm_head(self) -> nn.Module:
        return self.model.get_output_embeddings()

    @property
    def num_blocks(self) -> int:
        return len(self.blocks)

    def has(self, *features: str) -> bool:
        """Whether the model has every one of the layout `features` (PROJECTIONS, NORMS, ROTARY)."""
        return not any(feature in self.missing for feature in features)

    def require(self, features: Iterable[str], who: str) -> None:
        """One ConfigError naming what of `features` the model lacks; `who` needs them (a method name)."""
        lacking = [f"{self.missing[f]}" for f in features if f in self.missing]
        if lacking:
            raise ConfigError(
                f"{who} needs the LLaMA-family layout, which this {self.model_type} model lacks: "
                f"{'; '.join(lacking)}. LoRA and full fine-tuning run on any causal LM"
            )

    def linear_shapes(self) -> dict[str, tuple[int, int]]:
        """(out_features, in_features) of each projection name (identical in every block); {} without
        the LLaMA projections."""
        if not self.blocks:
            return {}
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
    """Describe causal LM `model` from its modules; ConfigError only when it is no causal LM at all."""
    config = getattr(model, "config", None)
    model_type = getattr(config, "model_type", type(model).__name__)
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    base = getattr(model, "base_model", None)
    if config is None or head is None or base is None or base is model:
        raise ConfigError(
            f"model of type {model_type!r} ({type(model).__name__}) has no decoder with an LM head: "
            "pass a causal LM (AutoModelForCausalLM), not a bare encoder"
        )
    names = {module: name for name, module in model.named_modules()}
    num_heads = getattr(config, "num_attention_heads", 0) or 0
    hidden = getattr(config, "hidden_size", 0) or 0
    shape = dict(
        num_heads=num_heads,
        num_kv_heads=getattr(config, "num_key_value_heads", None) or num_heads,
        head_dim=getattr(config, "head_dim", None) or (hidden // num_heads if num_heads else 0),
        hidden_size=hidden,
        intermediate_size=getattr(config, "intermediate_size", None) or 0,
    )
    layers = _decoder_layers(base, getattr(config, "num_hidden_layers", None))
    layers_path = names[layers] if layers is not None else None
    missing: dict[str, str] = {}
    blocks: tuple[BlockAnatomy, ...] = ()
    style = qk_norm = None
    if layers is None:
        count = getattr(config, "num_hidden_layers", "?")
        for feature in LLAMA_LAYOUT:
            missing[feature] = f"{_WANTED[feature]} (no ModuleList of the config's {count} layers found)"
    else:
        candidates = tuple(BlockAnatomy(i, f"{layers_path}.{i}", layer) for i, layer in enumerate(layers))
        problem = _projection_problem(candidates, shape)
        if problem:
            missing[PROJECTIONS] = f"{_WANTED[PROJECTIONS]} ({problem})"
        else:
            blocks = candidates
        style, qk_norm, problem = _norm_arrangement(candidates, shape)
        if problem:
            missing[NORMS] = f"{_WANTED[NORMS]} ({problem})"
        problem = _rotary_problem(base, layers)
        if problem:
            missing[ROTARY] = f"{_WANTED[ROTARY]} ({problem})"
    return ModelAnatomy(
        family="other" if missing else "llama",
        model_type=model_type,
        model=model,
        blocks=blocks,
        decoder_path=names[base],
        layers_path=layers_path,
        num_layers=len(layers) if layers is not None else 0,
        block_style=style,
        qk_norm=qk_norm,
        missing=missing,
        **shape,
    )


# ---- detection ----------------------------------------------------------------------------------------


def _decoder_layers(base: nn.Module, count: int | None) -> nn.ModuleList | None:
    """The first ModuleList (breadth first) in the base model with the config's number of layers."""
    queue = [base]
    while queue:
        module = queue.pop(0)
        for child in module.children():
            if isinstance(child, nn.ModuleList) and len(child) and (count is None or len(child) == count):
                return child
            queue.append(child)
    return None


def _is_linear(module: nn.Module | None) -> bool:
    """An nn.Linear, or a method's wrapper keeping one as `base_layer` (anatomy of a prepared model)."""
    return isinstance(module, nn.Linear) or isinstance(getattr(module, "base_layer", None), nn.Linear)


def _dense_shape(module: nn.Module) -> tuple[int, int]:
    weight = getattr(module, "base_layer", module).weight
    return tuple(weight.shape)


def _projection_problem(blocks: tuple[BlockAnatomy, ...], shape: dict[str, int]) -> str | None:
    """Why the layers do not have the LLaMA projections, or None when every layer has them."""
    d, hd, inner = shape["hidden_size"], shape["head_dim"], shape["intermediate_size"]
    expected = {
        "q_proj": (shape["num_heads"] * hd, d),
        "k_proj": (shape["num_kv_heads"] * hd, d),
        "v_proj": (shape["num_kv_heads"] * hd, d),
        "o_proj": (d, shape["num_heads"] * hd),
        "gate_proj": (inner, d),
        "up_proj": (inner, d),
        "down_proj": (d, inner),
    }
    for block in blocks:
        parents = {"self_attn": ATTENTION_LINEARS, "mlp": MLP_LINEARS}
        absent = [
            f"{parent}.{name}"
            for parent, linears in parents.items()
            for name in linears
            if not _is_linear(getattr(getattr(block.module, parent, None), name, None))
        ]
        if len(absent) == len(LINEAR_NAMES):
            return f"layer {block.path} has {_parts(block.module)}"
        if absent:
            return f"layer {block.path} lacks {', '.join(absent)}"
        for name, want in expected.items():
            got = _dense_shape(block.linear(name))
            if got != want:
                path = block.linear_path(name)
                return f"{path} is {got[0]} x {got[1]}, the config implies {want[0]} x {want[1]}"
    return None


def _parts(layer: nn.Module) -> str:
    """The layer's modules that own weights, e.g. "ln_1, attn.c_attn, attn.c_proj, ln_2, mlp.c_fc"."""
    owners = [
        name for name, m in layer.named_modules() if name and any(True for _ in m.parameters(recurse=False))
    ]
    return ", ".join(owners) or "no weights"


def _is_norm(module: nn.Module) -> bool:
    return isinstance(module, nn.LayerNorm | nn.RMSNorm) or "norm" in type(module).__name__.lower()


def _norm_width(module: nn.Module) -> int | None:
    weight = getattr(module, "weight", None)
    return int(weight.shape[-1]) if weight is not None and weight.dim() == 1 else None


def _norm_arrangement(
    blocks: tuple[BlockAnatomy, ...], shape: dict[str, int]
) -> tuple[str | None, str | None, str | None]:
    """(block style, q/k norm, problem): the same arrangement in every layer, or why not."""
    styles, qk_norms = set(), set()
    for block in blocks:
        norms = tuple(name for name, child in block.module.named_children() if _is_norm(child))
        style = next((s for s, wanted in BLOCK_STYLES.items() if set(norms) == set(wanted)), None)
        if style is None:
            found = ", ".join(norms) or "none"
            return None, None, f"layer {block.path} has the norms {found}"
        styles.add(style)
        attention = getattr(block.module, "self_attn", None)
        q_norm, k_norm = getattr(attention, "q_norm", None), getattr(attention, "k_norm", None)
        if q_norm is None and k_norm is None:
            qk_norms.add(None)
            continue
        hd = shape["head_dim"]
        widths = (_norm_width(q_norm) if q_norm else None, _norm_width(k_norm) if k_norm else None)
        if widths == (hd, hd):
            qk_norms.add(HEAD)
        elif widths == (shape["num_heads"] * hd, shape["num_kv_heads"] * hd):
            qk_norms.add(FULL)
        else:
            problem = f"{block.path}.self_attn has q/k norms of widths {widths}: neither one head nor all"
            return None, None, problem
    if len(styles) > 1 or len(qk_norms) > 1:
        return None, None, "the layers arrange their norms differently"
    return styles.pop(), qk_norms.pop(), None


def _rotary_problem(base: nn.Module, layers: nn.ModuleList) -> str | None:
    """Why the layers' attention is not rotary as in LLaMA, or None."""
    # the class's forward: a method may have put its own on the instance (SAGE's sparse blocks)
    if not all(
        "position_embeddings" in inspect.signature(type(layer).forward).parameters for layer in layers
    ):
        return "its layers take no position_embeddings"
    in_layers = {id(m) for m in layers.modules()}
    rotary = any(  # LLaMA's inv_freq; Gemma 3's per layer type (sliding_attention_inv_freq, ...)
        name.endswith("inv_freq")
        for m in base.modules()
        if id(m) not in in_layers
        for name in [*dict(m.named_buffers(recurse=False)), *vars(m)]
    )
    return None if rotary else "the decoder has no rotary embedding (no inv_freq)"
