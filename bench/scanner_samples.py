"""Writes the scanner comparison samples of BENCHMARKS.md (model provenance) as bytes.

Nothing is loaded or unpickled: every file is written byte for byte. Run:
    python3 bench/scanner_samples.py /tmp/samples
    target/release/perimeter model scan /tmp/samples
    picklescan -p /tmp/samples/<file>; modelscan -p /tmp/samples/<file>
"""
import io
import json
import os
import pickle
import struct
import sys
import zipfile
from collections import OrderedDict

out = sys.argv[1] if len(sys.argv) > 1 else "/tmp/samples"
os.makedirs(out, exist_ok=True)


def w(name, data):
    with open(os.path.join(out, name), "wb") as f:
        f.write(data)


OS_SYSTEM = b"\x80\x02cos\nsystem\nq\x00X\x02\x00\x00\x00idq\x01\x85q\x02Rq\x03."
w("p1_global_os_system.pkl", OS_SYSTEM)
w("p2_stack_global_memo.pkl", b"\x80\x04\x95\x00\x00\x00\x00\x00\x00\x00\x00\x8c\x05posix\x94\x8c\x06system\x94h\x00h\x01\x93\x8c\x02id\x85R.")
w("p3_dotted.pkl", b"\x80\x04\x8c\x07pathlib\x94\x8c\tos.system\x94\x93\x8c\x02id\x85R.")
w("p4_getattr.pkl", b"\x80\x02cbuiltins\ngetattr\n(cbuiltins\n__import__\nX\x02\x00\x00\x00os\x85RX\x06\x00\x00\x00systemtRX\x02\x00\x00\x00id\x85R.")
w("p5_payload_then_garbage.pkl", b"\x80\x02cos\nsystem\nX\x02\x00\x00\x00id\x85R.\xff\xfe garbage")
# pickle.dumps only serialises here; nothing is loaded.
w("b1_ordereddict.pkl", pickle.dumps(OrderedDict(a=1), protocol=2))
z = io.BytesIO()
with zipfile.ZipFile(z, "w", zipfile.ZIP_STORED) as zf:
    zf.writestr("archive/data.pkl", pickle.dumps({"w": 1}, protocol=2))
    zf.writestr("archive/data/0", OS_SYSTEM)
    zf.writestr("archive/version", "3\n")
w("t1_hidden_in_data_member.pt", z.getvalue())
key, val = b"tokenizer.chat_template", b"{{ ''.__class__.__mro__[1].__subclasses__() }}"
w("g1_template_injection.gguf", b"GGUF" + struct.pack("<IQQQ", 3, 0, 1, len(key)) + key + struct.pack("<IQ", 8, len(val)) + val)
z = io.BytesIO()
with zipfile.ZipFile(z, "w") as zf:
    zf.writestr("config.json", json.dumps({"class_name": "Sequential", "config": {"layers": [
        {"class_name": "Lambda", "config": {"function": {"class_name": "__lambda__", "config": {"code": "4wEAAAAAAAAA"}}}}]}}))
    zf.writestr("metadata.json", json.dumps({"keras_version": "3.0.0"}))
w("k1_lambda.keras", z.getvalue())
print("\n".join(sorted(os.listdir(out))))
