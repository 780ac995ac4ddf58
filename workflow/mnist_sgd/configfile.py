"""Config files refused where YAML would let a mistake pass: a key given twice in one mapping, which
PyYAML (and so Snakemake) reads as the last value silently."""

import yaml


class ConfigFileError(ValueError):
    """A config file that says something twice; the message names the file, both lines and the fix."""


def check_config_file(path):
    """ConfigFileError where a mapping of the YAML file at `path` gives a key twice."""

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
                    f"config error: {path}: key {key!r} is given twice, at line {first} and at line {line} "
                    "(YAML would keep the second silently); keep one"
                )
        return yaml.SafeLoader.construct_mapping(loader, node, deep)

    Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, construct_mapping)
    with open(path) as stream:
        yaml.load(stream, Loader)
