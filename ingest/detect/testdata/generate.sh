#!/usr/bin/env bash
# generate.sh regenerates the detector fixtures in this folder: small H.264
# clips, each showing one thing a detector must notice (or must not).
#
# The fixtures are committed: tests never run this script and need no
# ffmpeg to load them. Run it only to change a fixture:
#
#   ingest/detect/testdata/generate.sh
#
# Needs ffmpeg built with libx264 (Debian 12's ffmpeg 5.1 is).
#
# The encoding is that of the simulated-camera fixtures
# (ingest/simcam/fixtures/generate.sh) made small and quick to test with:
#   - 320x180, 25 fps constant;
#   - an IDR every second exactly (-g 25 -keyint_min 25 -sc_threshold 0),
#     closed GOP;
#   - no B-frames (-bf 0), main profile: decode order = display order;
#   - an access unit delimiter before every access unit (aud=1);
#   - SPS/PPS repeated before every IDR (repeat-headers=1);
#   - one thread, so the output is byte-identical from run to run;
# except the rate control: capped constant quality (-crf 23 with a
# 600 kb/s ceiling) instead of an average bitrate. That is how most
# surveillance cameras are set up ("VBR" with a cap), and it is what makes
# P-frame sizes follow the amount of change in the picture, which the
# motion detector reads. (Under a tight ABR or CBR the encoder raises the
# quantiser when things move and frame sizes say much less.)
set -euo pipefail

cd "$(dirname "$0")"

FFMPEG=${FFMPEG:-ffmpeg}

# (grep reads the whole listing: grep -q would exit early, and with pipefail
# ffmpeg's SIGPIPE would fail the script.)
if ! "$FFMPEG" -hide_banner -encoders 2>/dev/null | grep libx264 >/dev/null; then
	echo "generate.sh: $FFMPEG has no libx264 encoder" >&2
	exit 1
fi

# encode NAME SECONDS FILTERGRAPH: the filter graph's output is [out].
encode() {
	local name=$1 secs=$2 graph=$3
	echo "generate.sh: $name.h264" >&2
	"$FFMPEG" -hide_banner -loglevel error -y \
		-filter_complex "$graph" -map '[out]' -t "$secs" \
		-c:v libx264 -preset medium -profile:v main -pix_fmt yuv420p -threads 1 \
		-r 25 -g 25 -keyint_min 25 -sc_threshold 0 -bf 0 \
		-crf 23 -maxrate 600k -bufsize 1200k \
		-x264-params "repeat-headers=1:aud=1:open-gop=0" \
		-an -f h264 "$name.h264.tmp"
	mv "$name.h264.tmp" "$name.h264"
}

# The scene: ffmpeg's testsrc2 (colour bars, a moving square, text, a
# counter) under light temporal noise, like a camera's sensor.
scene="testsrc2=size=320x180:rate=25"
# The still scene: the first frame of testsrc2, held.
still="testsrc2=size=320x180:rate=25:duration=0.04,loop=loop=-1:size=1,setpts=N/25/TB"

# normal: the detailed, moving scene. No detector may fire on it.
encode normal 6 "$scene,noise=alls=6:allf=t[out]"

# frozen: a still picture, every frame identical (a camera whose image
# pipeline hangs while its encoder carries on).
encode frozen 6 "$still[out]"

# black: nothing but black (a lens cap at night, a dead sensor).
encode black 4 "color=c=black:size=320x180:rate=25[out]"

# covered: nearly uniform dark grey with slight noise (a cloth or a hand
# over the lens, in daylight).
encode covered 4 "color=c=0x404040:size=320x180:rate=25,noise=alls=4:allf=t[out]"

# bright: the scene overexposed (sun in the lens, a broken iris).
encode bright 4 "$scene,lutyuv=y=215+val/8,noise=alls=3:allf=t[out]"

# blurred: the scene out of focus.
encode blurred 4 "$scene,boxblur=luma_radius=5:luma_power=2:chroma_radius=3,noise=alls=2:allf=t[out]"

# colourcast: the scene with a strong red-magenta cast (a failing
# white-balance or a broken colour filter).
encode colourcast 4 "$scene,lutyuv=u=val-6:v=val+40,noise=alls=6:allf=t[out]"

# still: a still scene with sensor noise and nothing moving: the motion
# detector must stay quiet, and it is not frozen either.
encode still 8 "$still,noise=alls=5:allf=t[out]"

# motion: the same still scene, with a textured object crossing it from
# 4 s to 6.5 s.
encode motion 8 "$still,noise=alls=5:allf=t[bg];testsrc=size=80x80:rate=25[fg];[bg][fg]overlay=x='if(between(t,4,6.5),(t-4)*100,-100)':y=50:eval=frame[out]"

ls -l ./*.h264 >&2
