"""Files as hospitals have them (PDF, multi-page TIFF, PNG, JPEG, DOCX, plain text) turned into
page texts: the PDF text layer where it is usable, Tesseract OCR otherwise.

Nothing here stores or logs a file or its text. ``extract.read_pages`` is the one entry point;
``formats`` tells what a file is, ``limits`` what it may cost, ``ocr`` runs Tesseract.
"""
