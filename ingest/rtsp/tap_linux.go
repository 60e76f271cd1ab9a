package rtsp

// rawReads: the tap reads sockets itself (see tap.fillRaw).
const rawReads = true

func rawRead(fd uintptr, b []byte) (int, error) { return readNB(int(fd), b) }
