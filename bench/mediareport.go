package bench

import (
	"fmt"
	"io"
	"text/tabwriter"
)

const mediaNote = "media: one file at a time through the kit's real Synapse, metasim and the bridge process (SQLite), " +
	"after a 64 KiB warm-up each way; each row is the round with the median bridged time, its peak growth the largest of all " +
	"rounds (every round is in the JSON's media_rounds). Meta→Matrix: the simulated user sends a document of random bytes; \"sender s\" is " +
	"metasim encrypting it and uploading it to Meta's media hosts (until its control API answered), \"bridged s\" from then " +
	"until the m.file event reached the Matrix user's /sync, \"bridge part s\" the bridge's handling of the file by its " +
	"debug log (fetch from Meta's media host, verify, decrypt, upload to Synapse), of which \"Synapse upload s\" is the " +
	"upload, and \"download s\" the Matrix user's download through Synapse afterwards, bytes checked. Matrix→Meta: \"sender s\" is the Matrix user's upload to Synapse, \"bridged s\" " +
	"from sending the m.file until the simulated device's inbox showed the file fetched from the bridge through Meta's " +
	"proxy and verified; its \"bridge part s\" ends when the device received the message (the bridge downloaded, encrypted, " +
	"hosted and sent it; \"download+host s\" is the bridge's own timing of downloading, encrypting and hosting it, by its debug log, " +
	"the rest being Synapse passing the event on and the message's way to the device) and \"Meta fetch s\" is the rest (Meta's proxy fetching the blob from the bridge, the device " +
	"decrypting and verifying it). MB/s = bytes / bridged s (10^6 bytes). Peak growth = the bridge's VmHWM after the file " +
	"(reset through /proc/<pid>/clear_refs before it) minus its VmRSS before it; goal under 16 MiB. Bare = " +
	"interop/mediacrypt's benchmark of the same operation (Encrypt for Matrix→Meta, Decrypt for Meta→Matrix) on this " +
	"machine; goal: the bridged speed at least half of it."

// printMedia writes the media table and the bare cryptography speeds.
func (r *Report) printMedia(w io.Writer) {
	if len(r.MediaCrypto) > 0 {
		fmt.Fprintln(w)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "interop/mediacrypt (bare, no network)\tMB/s\tms/op\t")
		for _, c := range r.MediaCrypto {
			fmt.Fprintf(tw, "%s\t%.1f\t%.2f\t\n", c.Name, c.MBPerSec, c.NsPerOp/1e6)
		}
		_ = tw.Flush()
	}
	if len(r.Media) == 0 {
		return
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "media\tMiB\tsender s\tbridged s\tMB/s\ttotal MB/s\tbridge part s\tbridge part MB/s\tSynapse upload s\tdownload+host s\tMeta fetch s\tdownload s\tbridge CPU s\tSynapse CPU s\t"+
		"RSS before MiB\tpeak growth MiB\t< 16 MiB\tbare MB/s\tratio\t>= 0.5\t")
	for _, m := range r.Media {
		dl := "-"
		if m.DownloadSeconds > 0 {
			dl = fmt.Sprintf("%.2f", m.DownloadSeconds)
		}
		part, partMB, upload, host, fetch := "-", "-", "-", "-", "-"
		if m.BridgeSeconds > 0 {
			part, partMB = fmt.Sprintf("%.2f", m.BridgeSeconds), fmt.Sprintf("%.1f", m.BridgeMBPerSec)
		}
		if m.UploadSeconds > 0 {
			upload = fmt.Sprintf("%.2f", m.UploadSeconds)
		}
		if m.HostSeconds > 0 {
			host = fmt.Sprintf("%.2f", m.HostSeconds)
		}
		if m.FetchSeconds > 0 {
			fetch = fmt.Sprintf("%.2f", m.FetchSeconds)
		}
		bare, ratio, ratioOK := "-", "-", "-"
		if m.BareMBPerSec > 0 {
			bare, ratio, ratioOK = fmt.Sprintf("%.1f", m.BareMBPerSec), fmt.Sprintf("%.2f", m.RatioToBare), yesNo(m.RatioToBare >= MediaRatioGoal)
		}
		fmt.Fprintf(tw, "%s\t%.0f\t%.2f\t%.2f\t%.1f\t%.1f\t%s\t%s\t%s\t%s\t%s\t%s\t%.2f\t%.2f\t%.1f\t%.1f\t%s\t%s\t%s\t%s\t\n",
			directionLabel(m.Direction), mib(m.Bytes), m.SenderSeconds, m.Seconds, m.MBPerSec, m.TotalMBPerSec, part, partMB, upload, host, fetch, dl,
			m.BridgeCPUSeconds, m.HomeserverCPUSeconds, mib(m.RSSBeforeBytes), mib(m.PeakGrowthBytes),
			yesNo(m.PeakGrowthBytes < MediaPeakGoalBytes), bare, ratio, ratioOK)
	}
	_ = tw.Flush()
}

func yesNo(ok bool) string {
	if ok {
		return "yes"
	}
	return "NO"
}
