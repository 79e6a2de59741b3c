"""Prints what CMake needs from the building Python's TensorFlow, one item a line."""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import tensorflow as tf

include_dir = tf.sysconfig.get_include()
defines = [f[2:] for f in tf.sysconfig.get_compile_flags() if f.startswith("-D")]
lib_dir = tf.sysconfig.get_lib()
lib_name = next(
    f[len("-l:"):] for f in tf.sysconfig.get_link_flags() if f.startswith("-l:")
)
print(tf.__version__)
print(include_dir)
print(",".join(defines))
print(os.path.join(lib_dir, lib_name))
