"""The learned auto-encoder tokenizer, end to end: chunks -> FSQ codes -> vocabulary -> engine ``autoencoder``.

Import the modules directly (``from microtransformer.autoencoder.model import
ChunkAutoEncoder``); this file imports nothing, so ``import
microtransformer.autoencoder.chunking`` stays free of torch.
"""
