cd /work/main
A=./publish/linux-x64/apb
M11=.gpu/run11/model
T=niah_multivalue,niah_multiquery
for cfg in "r11h11 $M11 $M11/retaining_heads.safetensors" "r11h9 $M11 models/embedded/retaining_heads.safetensors"; do
  set -- $cfg
  s=$(date +%s)
  $A eval ruler --model $2 --device cpu --tasks $T --samples 20 --length 16k --ranks 4 --strategies apb --retaining-heads $3 --json /tmp/s27/cpu/$1.json > /tmp/s27/cpu/$1.md 2>/tmp/s27/cpu/$1.log
  echo "$1 rc=$? $(( $(date +%s) - s )) s" >> /tmp/s27/cpu/times.txt
done
