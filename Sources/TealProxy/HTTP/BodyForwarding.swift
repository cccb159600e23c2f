import NIOCore

extension BodyTracker {
    /// Takes the body's bytes from the front of `buffer` (moving its reader index past them) and
    /// hands `write` what is to be passed on: slices of `buffer` where the bytes stay as they
    /// came (sized bodies, and chunked ones already in canonical form), new bytes where chunk
    /// framing is written anew (`ChunkedPiece`). Contiguous kept bytes go out as one slice.
    mutating func forward(_ buffer: inout ByteBuffer, write: (ByteBuffer) -> Void) throws(Failure) {
        let view = buffer
        let base = view.readerIndex
        var runStart = 0, runEnd = 0
        func flushRun() {
            if runEnd > runStart { write(view.getSlice(at: base + runStart, length: runEnd - runStart)!) }
            runStart = runEnd
        }
        func writeNew(_ bytes: [UInt8]) {
            flushRun()
            var made = ByteBuffer()
            made.writeBytes(bytes)
            write(made)
        }
        let used: Int
        do {
            used = try view.withUnsafeReadableBytes { raw in
                try consume(raw) { piece in
                    switch piece {
                    case .data(let range), .verbatim(let range):
                        if range.lowerBound != runEnd {
                            flushRun()
                            runStart = range.lowerBound
                        }
                        runEnd = range.upperBound
                    case .sizeLine(let size):
                        writeNew(ChunkedFramer.sizeLine(size))
                    case .crlf:
                        writeNew([HTTPBytes.cr, HTTPBytes.lf])
                    case .trailerField(let line):
                        writeNew(line + [HTTPBytes.cr, HTTPBytes.lf])
                    }
                }
            }
        } catch {
            throw .invalidChunk
        }
        flushRun()
        buffer.moveReaderIndex(forwardBy: used)
    }
}
