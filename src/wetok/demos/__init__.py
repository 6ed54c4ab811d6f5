"""wetok.demos: small demonstrations that train and run on one CPU, with their weights shipped in
the package.

- `wetok.demos.digits`: scikit-learn's handwritten digits (1797 images, 10 classes) upscaled to
  32 px: the images, a class-folder writer, a classifier of the real digits, and the shipped
  tokenizer (`DEMO_DIR/tokenizer`) and generator (`DEMO_DIR/generator`).

The demos need scikit-learn (`pip install scikit-learn`, or the `demo` extra).
"""
