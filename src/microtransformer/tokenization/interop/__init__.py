"""Interoperability: our saved tokenizers in other libraries, and theirs in ours.

* :mod:`.hf_export`: the ``tokenizer.json`` / ``tokenizer_config.json`` /
  ``special_tokens_map.json`` written beside every BPE engine's own files, so
  ``transformers.AutoTokenizer.from_pretrained(dir)`` gives our ids.
* :mod:`.sentencepiece_model`: our special tokens as CONTROL pieces of the
  ``.model`` file (plain ``SentencePieceProcessor`` knows them), and reading a
  model's normalizer and trainer settings.
* :mod:`.imports`: Hugging Face directories / ``tokenizer.json``, ``.tiktoken``
  files, SentencePiece and minbpe ``.model`` files loaded as our tokenizers,
  and the parity check ``mtx tokenizer convert`` prints.
"""
