// The lab's pause program (the sandbox image's only binary): stdlib only, so it builds
// offline. Built by lab/kubebin.py; the image is tagged as containerd's sandbox image.
module bootstrap.lab/pause

go 1.26.0
