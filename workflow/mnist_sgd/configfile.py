"""Config files refused where YAML would let a mistake pass, or take the machine down: a key given twice
in one mapping, which PyYAML (and so Snakemake) reads as the last value silently; and aliases that
expand a few hundred bytes into billions of values (an alias bomb), which validating or printing the
config would then walk."""

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
        lines = {}
        for key_node, _ in node.value:
            key = loader.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            try:
                first = lines.setdefault(key, line)
            except TypeError:  # an unhashable key: YAML's own loader says what is wrong with it
                continue
            if first != line:
                raise ConfigFileError(
                    f"config error: {origin}: key {key!r} is given twice, at line {first} and at line {line} "
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
