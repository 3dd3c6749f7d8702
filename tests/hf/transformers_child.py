"""What `transformers` (PyTorch, CPU, float32) makes of Hugging Face folders.

Run as `python transformers_child.py REQUEST.json` in a process of its own
that never imports keras_guide (it checks): the reference side of
`tests/hf/`. The request names, per folder, token ids to score, texts to
tokenize, a prompt to continue greedily and chat messages to render; the
answer is `REQUEST.json.out.json` (lists) and `REQUEST.json.out.npz` (the
float32 logits, one array per scored folder).
"""

import json
import sys

import numpy as np
import torch
import transformers


def _model(folder, cache):
    if folder not in cache:
        model, info = transformers.AutoModelForCausalLM.from_pretrained(
            folder,
            dtype=torch.float32,
            attn_implementation="eager",
            output_loading_info=True,
        )
        cache[folder] = model.eval(), {k: sorted(map(str, v)) for k, v in info.items()}
    return cache[folder]


def main(path):
    torch.manual_seed(0)
    request = json.load(open(path))
    models, tokenizers, answer, logits = {}, {}, {}, {}
    for index, job in enumerate(request):
        folder = job["folder"]
        out = answer[str(index)] = {}
        if "ids" in job:
            model, info = _model(folder, models)
            out["loading_info"] = info
            out["class"] = type(model).__name__
            with torch.no_grad():
                z = model(torch.tensor([job["ids"]])).logits[0]
            logits[str(index)] = z.numpy().astype(np.float32)
        if folder not in tokenizers and ({"texts", "prompt", "messages"} & set(job)):
            tokenizers[folder] = transformers.AutoTokenizer.from_pretrained(folder)
        tokenizer = tokenizers.get(folder)
        if "texts" in job:
            out["class_tokenizer"] = type(tokenizer).__name__
            out["ids"] = [
                tokenizer(t, add_special_tokens=False)["input_ids"]
                for t in job["texts"]
            ]
            out["ids_with_specials"] = [tokenizer(t)["input_ids"] for t in job["texts"]]
            out["ids_split_special"] = [
                tokenizer(t, add_special_tokens=False, split_special_tokens=True)[
                    "input_ids"
                ]
                for t in job["texts"]
            ]
            out["decoded"] = [tokenizer.decode(ids) for ids in out["ids"]]
        if "prompt" in job:
            model, _ = _model(folder, models)
            prompt = tokenizer(job["prompt"], return_tensors="pt")["input_ids"]
            config = transformers.GenerationConfig(
                max_new_tokens=job["steps"],
                do_sample=False,
                eos_token_id=None,
                pad_token_id=0,
            )
            with torch.no_grad():
                done = model.generate(
                    prompt,
                    generation_config=config,
                    attention_mask=torch.ones_like(prompt),
                )
            out["prompt_ids"] = prompt[0].tolist()
            out["generated"] = done[0, prompt.shape[1] :].tolist()
        if "messages" in job:
            out["chat"] = tokenizer.apply_chat_template(
                job["messages"], tokenize=False, add_generation_prompt=True
            )
    if any(name.startswith("keras_guide") for name in sys.modules):
        sys.exit("keras_guide was imported")
    json.dump(answer, open(path + ".out.json", "w"))
    np.savez(path + ".out.npz", **logits)


if __name__ == "__main__":
    main(sys.argv[1])
