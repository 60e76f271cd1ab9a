package detect

import "math"

// The size every analysed keyframe is scaled to, whatever the camera's
// resolution: enough for blur and freeze to show, small enough that the
// statistics cost microseconds. Frames are 8-bit YUV 4:2:0, limited range
// as cameras send them (black is luma 16, white 235, neutral chroma 128).
const (
	frameW    = 320
	frameH    = 180
	lumaSize  = frameW * frameH
	frameSize = lumaSize * 3 / 2
)

// picture holds the statistics of one decoded keyframe.
type picture struct {
	// Mean and StdDev of the luma.
	Mean, StdDev float64
	// Sharpness is the variance of the luma's Laplacian divided by the
	// luma's variance (plus a floor): the share of the picture's contrast
	// found at the finest scale. Focus blur lowers it whatever the
	// lighting; it is meaningless on a uniform picture.
	Sharpness float64
	// U and V are the mean chroma; Cast is their distance from neutral
	// (128, 128).
	U, V, Cast float64
}

// sharpnessFloor keeps Sharpness finite on flat pictures; a luma variance
// of 25 is a standard deviation of 5 levels, about a covered lens.
const sharpnessFloor = 25

// measure computes a picture's statistics from a frame of frameSize bytes.
func measure(frame []byte) picture {
	y := frame[:lumaSize]
	u := frame[lumaSize : lumaSize+lumaSize/4]
	v := frame[lumaSize+lumaSize/4 : frameSize]

	var sum, sq uint64
	for _, p := range y {
		sum += uint64(p)
		sq += uint64(p) * uint64(p)
	}
	n := float64(lumaSize)
	mean := float64(sum) / n
	variance := max(float64(sq)/n-mean*mean, 0)

	// 4-neighbour Laplacian over the interior.
	var lsum, lsq float64
	for r := 1; r < frameH-1; r++ {
		row := y[r*frameW : (r+1)*frameW]
		up := y[(r-1)*frameW : r*frameW]
		down := y[(r+1)*frameW : (r+2)*frameW]
		for c := 1; c < frameW-1; c++ {
			l := float64(int(up[c]) + int(down[c]) + int(row[c-1]) + int(row[c+1]) - 4*int(row[c]))
			lsum += l
			lsq += l * l
		}
	}
	ln := float64((frameW - 2) * (frameH - 2))
	lmean := lsum / ln
	lvar := max(lsq/ln-lmean*lmean, 0)

	var us, vs uint64
	for i := range u {
		us += uint64(u[i])
		vs += uint64(v[i])
	}
	cn := float64(len(u))
	um, vm := float64(us)/cn, float64(vs)/cn
	return picture{
		Mean:      mean,
		StdDev:    math.Sqrt(variance),
		Sharpness: lvar / (variance + sharpnessFloor),
		U:         um,
		V:         vm,
		Cast:      math.Hypot(um-128, vm-128),
	}
}

// meanAbsDiff is the mean absolute difference of two luma planes of equal
// size, in levels.
func meanAbsDiff(a, b []byte) float64 {
	if len(a) != len(b) || len(a) == 0 {
		return math.Inf(1)
	}
	var s uint64
	for i := range a {
		d := int(a[i]) - int(b[i])
		if d < 0 {
			d = -d
		}
		s += uint64(d)
	}
	return float64(s) / float64(len(a))
}
