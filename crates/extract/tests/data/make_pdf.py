#!/usr/bin/env python3
"""Writes two-pages.pdf: a minimal, valid two-page PDF with known text, and encrypted.pdf:
the same document behind a standard security handler whose user password is not empty.

Standard library only. Uses the base-14 Helvetica font and plain text-showing operators, and
computes the cross-reference offsets, so the files are well-formed byte for byte.
Run from this directory: python3 make_pdf.py
"""

PAGES = [
    ["Annual leave policy", "Staff receive 25 days of paid leave."],
    ["Carry-over rules", "Up to 5 days may be carried over."],
]
TITLE = "Leave Handbook"


def escape(text):
    return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def content_stream(lines):
    ops = ["BT", "/F1 12 Tf", "72 720 Td"]
    for i, line in enumerate(lines):
        if i > 0:
            ops.append("0 -20 Td")
        ops.append(f"({escape(line)}) Tj")
    ops.append("ET")
    return ("\n".join(ops) + "\n").encode("ascii")


def build(encrypted=False):
    # Object numbers: 1 catalog, 2 pages, 3 font, 4 info, then (page, content) pairs.
    page_ids = [5 + 2 * i for i in range(len(PAGES))]
    objects = {
        1: b"<< /Type /Catalog /Pages 2 0 R >>",
        2: ("<< /Type /Pages /Kids [%s] /Count %d >>"
            % (" ".join(f"{p} 0 R" for p in page_ids), len(PAGES))).encode("ascii"),
        3: b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
        4: f"<< /Title ({escape(TITLE)}) /Producer (make_pdf.py) >>".encode("ascii"),
    }
    for page_id, lines in zip(page_ids, PAGES):
        stream = content_stream(lines)
        objects[page_id] = (
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
            f"/Resources << /Font << /F1 3 0 R >> >> /Contents {page_id + 1} 0 R >>"
        ).encode("ascii")
        objects[page_id + 1] = (
            b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"endstream"
        )
    if encrypted:
        # RC4 40-bit (V1, R2). /O and /U are arbitrary, so no password (the empty one
        # included) authenticates: a reader can tell the file is encrypted, not read it.
        objects[max(objects) + 1] = (
            b"<< /Filter /Standard /V 1 /R 2 /P -44 "
            b"/O <" + b"11" * 32 + b"> /U <" + b"22" * 32 + b"> >>"
        )

    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = {}
    for number in sorted(objects):
        offsets[number] = len(out)
        out += b"%d 0 obj\n" % number + objects[number] + b"\nendobj\n"
    xref_at = len(out)
    count = max(objects) + 1
    out += b"xref\n0 %d\n" % count
    out += b"0000000000 65535 f \n"
    for number in range(1, count):
        out += b"%010d 00000 n \n" % offsets[number]
    extra = b""
    if encrypted:
        extra = b" /Encrypt %d 0 R /ID [<%s> <%s>]" % (max(objects), b"ab" * 16, b"ab" * 16)
    out += b"trailer\n<< /Size %d /Root 1 0 R /Info 4 0 R%s >>\n" % (count, extra)
    out += b"startxref\n%d\n%%%%EOF\n" % xref_at
    return bytes(out)


if __name__ == "__main__":
    with open("two-pages.pdf", "wb") as f:
        f.write(build())
    with open("encrypted.pdf", "wb") as f:
        f.write(build(encrypted=True))
