// Two drivers on one net: Yosys' `check` reports it; psa synth must refuse to report numbers.
module clash(clk, a, b, y);
  input clk; input a; input b; output y;
  wire w;
  assign w = a;
  assign w = b;
  reg r;
  always @(posedge clk) r <= w;
  assign y = r;
endmodule
