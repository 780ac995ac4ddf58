"""Reading the config as it is meant, before the schema validates it.

Config files are refused where YAML would let a mistake pass, or take the machine down: a key given
twice in one mapping, which PyYAML (and so Snakemake) reads as the last value silently; and aliases that
expand a few hundred bytes into billions of values (an alias bomb), which validating or printing the
config would then walk. `--config` values are read as a config file would read them, learning rates
written like 1e-3 as numbers, and local mirrors must exist.
"""

import json
import os
import re

import yaml

# The most values (scalars, lists and mappings, each alias counted as what it stands for) a config may
# expand to: a 10^4-run grid's config holds a few hundred.
MAX_VALUES = 100_000


class ConfigFileError(ValueError):
    """A config file that says something twice, or too much; the message names the file, the lines and the fix."""


def check_config_file(path):
    """ConfigFileError where a mapping of the YAML file at `path` gives a key twice, or where its aliases
    expand it to more than MAX_VALUES values."""
    with open(path) as stream:
        check_config_text(stream.read(), path)


def check_config_text(text, origin):
    """As check_config_file, for YAML `text` read from `origin` (a file, or a --config entry)."""

    class Loader(yaml.SafeLoader):
        pass

    def construct_mapping(loader, node, deep=False):
        places = {}
        for key_node, _ in node.value:
            key = loader.construct_object(key_node, deep=True)
            place = f"line {key_node.start_mark.line + 1}"
            try:
                first = places.get(key)
            except TypeError:  # an unhashable key: YAML's own loader says what is wrong with it
                continue
            if first is None:
                places[key] = place
            else:
                if first == place:  # both on one line, as in {lr: 1, lr: 2}
                    place += " again"
                raise ConfigFileError(
                    f"config error: {origin}: key {key!r} is given twice, at {first} and at {place} "
                    "(YAML would keep the second silently); keep one"
                )
        return yaml.SafeLoader.construct_mapping(loader, node, deep)

    Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, construct_mapping)
    loader = Loader(text)
    try:
        node = loader.get_single_node()  # the node graph: an alias is the node it names, not a copy
        if node is not None:
            _check_expanded_size(node, origin)
            loader.construct_document(node)
    finally:
        loader.dispose()


def _check_expanded_size(root, origin):
    """ConfigFileError where the document under `root` expands to more than MAX_VALUES values, or
    refers to itself; each node is sized once, so this takes time in the document's own size."""
    sizes, open_nodes = {}, set()

    def size(node):
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in open_nodes:
            raise ConfigFileError(
                f"config error: {origin}: line {node.start_mark.line + 1}: an alias refers to a value that "
                "holds it (a value inside itself); write the value out"
            )
        open_nodes.add(key)
        if isinstance(node, yaml.SequenceNode):
            children = node.value
        elif isinstance(node, yaml.MappingNode):
            children = [child for pair in node.value for child in pair]
        else:
            children = []
        total = 1
        for child in children:
            total += size(child)
            if total > MAX_VALUES:
                raise ConfigFileError(
                    f"config error: {origin}: its aliases (*name) expand it to more than {MAX_VALUES:,} values "
                    f"(at line {node.start_mark.line + 1}); a config needs a few hundred: write the lists out, "
                    "or refer to each anchor (&name) fewer times"
                )
        open_nodes.discard(key)
        sizes[key] = total
        return total

    size(root)


def reparse_command_line(config, config_args, given, schema):
    """Make `config` hold `--config`'s values (`config_args`, the `key=value` strings; `given`, what
    Snakemake parsed of them) as a config file would read them. Snakemake parses a nested value
    (`sweeps={tiny: {...}}`) with YAML's base loader, which leaves every scalar a string ('300') and
    drops the quotes that said a value is one, and keeps a top-level `worker=false` the string 'false':
    the value as written is parsed again, so that `iterations: 300` is a number, `worker=false` a
    boolean, and `title: 'lr #2'` or `title: "2024-01-01"` stay the strings quoted. A top-level string
    is re-read only where the schema (`schema`: its `properties`) says the key is no string.
    ConfigFileError for a value that check_config_text refuses."""
    from snakemake.utils import update_config  # planning runs in Snakemake

    for entry in config_args or ():
        key, _, value = entry.partition("=")
        check_config_text(value, f"--config {key}")
        if isinstance(given.get(key), (dict, list)):
            update_config(config, {key: yaml.safe_load(value)})
        elif isinstance(given.get(key), str) and "string" not in str(schema.get(key, {}).get("type", "string")):
            config[key] = yaml.safe_load(value)


# YAML 1.1 (PyYAML's) reads 1e-3 and 1.5e2 as strings, for want of a dot or of the exponent's sign: as a
# learning rate each means the number.
FLOAT_WITHOUT_DOT = re.compile(r"[-+]?([0-9]+(\.[0-9]*)?|\.[0-9]+)[eE][-+]?[0-9]+")


def learning_rates_as_numbers(config):
    """Each sweep's and comparison selector's `lr` written like 1e-3, as the number it means."""

    def number(value):
        return float(value) if isinstance(value, str) and FLOAT_WITHOUT_DOT.fullmatch(value) else value

    places = list((config.get("sweeps") or {}).values())
    for comparison in ((config.get("figures") or {}).get("comparisons") or {}).values():
        places += comparison.get("runs") or [] if isinstance(comparison, dict) else []
    for place in places:
        if isinstance(place, dict) and "lr" in place:
            lr = place["lr"]
            place["lr"] = [number(v) for v in lr] if isinstance(lr, list) else number(lr)


def check_mirrors(config):
    """ConfigFileError where `data_mirror` or an entry of `mirrors` is a local folder that does not exist."""
    mirrors = {"data_mirror": config["data_mirror"], **{f"mirrors[{i}]": m for i, m in enumerate(config["mirrors"])}}
    for key, mirror in mirrors.items():
        if mirror and "://" not in mirror and not os.path.isdir(mirror):
            raise ConfigFileError(
                f"config error: {key}={mirror!r}: no such folder; give the folder holding the "
                "IDX files (in a sub-folder per data set, or MNIST's directly), or a URL"
            )


def added_sweeps_note(config, own_config_files, replaced):
    """The note to print when config files of one's own add sweeps to config/config.yaml's (unless the
    workflow's config is `replaced`): running the default study too is rarely what is meant. None if
    there is nothing to say."""
    own = {name for path in own_config_files for name in (_load(path) or {}).get("sweeps", {})}
    added = sorted(set(config["sweeps"]) - own)
    if own and not replaced and added:
        return (
            f"note: config/config.yaml's sweeps {added} run too; to run only the sweeps of "
            "your config file, add --replace-workflow-config"
        )
    return None


def _load(path):
    with open(path) as stream:
        return yaml.safe_load(stream)


def config_reference(schema):
    """config/README.md: every key the JSON `schema` (config/config.schema.yaml) admits, with its type,
    default and description, as Markdown (the Snakemake workflow catalog shows it). Made by
    `python -m mnist_sgd.study.config config/config.schema.yaml > config/README.md`; a test keeps it in step."""
    rows = []

    def resolve(node):
        while "$ref" in node:
            node = schema["$defs"][node["$ref"].rsplit("/", 1)[1]]
        return node

    def kind(node):
        node = resolve(node)
        if "enum" in node:
            return " or ".join(f"`{v}`" for v in node["enum"])
        types = node.get("type", "")
        types = types if isinstance(types, list) else [types]
        if "array" in types and "items" in node:
            items = resolve(node["items"])
            inner = " or ".join(kind(o) for o in items["oneOf"]) if "oneOf" in items else kind(items)
            types = [t if t != "array" else f"list of {inner}" for t in types]
        if "const" in node:
            return f"`{node['const']}`"
        if "oneOf" in node and not node.get("type"):
            return " or ".join(kind(option) for option in node["oneOf"])
        return " or ".join(t for t in types if t) or "any"

    def walk(prefix, node, required=()):
        node = resolve(node)
        for key, child in (node.get("properties") or {}).items():
            path = f"{prefix}{key}"
            child = resolve(child)
            default = json.dumps(child["default"]) if "default" in child else None
            if default is None:
                default = "required" if key in required else ""
            else:
                default = f"`{default}`" if len(default) <= 60 else "see `config/config.yaml`"
            rows.append(f"| `{path}` | {kind(child)} | {default} | {child.get('description', '')} |")
            walk(f"{path}.", child, child.get("required", ()))
        extra = node.get("additionalProperties")
        if isinstance(extra, dict):
            walk(f"{prefix}<name>.", extra, resolve(extra).get("required", ()))

    walk("", schema, schema.get("required", ()))
    return "\n".join(
        [
            "# Configuration keys",
            "",
            f"{schema['description']} Every key below, as `config/config.schema.yaml` admits it; planning",
            "refuses anything else before a job runs. `config/config.yaml` is the default study, `config/examples/`",
            "holds one config per feature, and [docs/configuration.md](../docs/configuration.md) explains them.",
            "This page is made from the schema: `python -m mnist_sgd.study.config config/config.schema.yaml >",
            "config/README.md` (run from `workflow/`'s parent with `workflow` on `PYTHONPATH`).",
            "",
            "| key | type | default | description |",
            "| --- | --- | --- | --- |",
            *rows,
            "",
        ]
    )


if __name__ == "__main__":
    import sys

    with open(sys.argv[1]) as stream:
        sys.stdout.write(config_reference(yaml.safe_load(stream)))
