"""Backend translators, one module per location type, all implementing `base.Translator`."""

from __future__ import annotations

import importlib

from gateway.translators.base import Translator

# Location type -> "module:class". Imported lazily so a missing cloud SDK only matters when used.
TRANSLATOR_TYPES: dict[str, str] = {
    "mem": "gateway.translators.mem:MemTranslator",
    "file": "gateway.translators.file:FileTranslator",
    "aws_s3": "gateway.translators.aws_s3:AwsS3Translator",
    "azure": "gateway.translators.azure:AzureTranslator",
    "gcp": "gateway.translators.gcp:GcpTranslator",
    "b2": "gateway.translators.b2:B2Translator",
    "swift": "gateway.translators.swift:SwiftTranslator",
    "mirror": "gateway.translators.mirror:MirrorTranslator",  # over other locations
}


def translator_class(type_name: str) -> type[Translator]:
    module_name, class_name = TRANSLATOR_TYPES[type_name].split(":")
    return getattr(importlib.import_module(module_name), class_name)
